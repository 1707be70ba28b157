"""One sample on its way into a shard: what every converter yields and the shard writer stores.

Shard members per sample (WebDataset keys share ``key``):
  ``<key>.jpg`` or ``<key>.png``  the original image bytes (JPEG sources are never re-encoded)
  ``<key>.json``                  ``meta`` (see ``Record.meta``) without the people's keypoints
  ``<key>.keypoints.npy``         float32 ``[P, K, 3]``: person i's keypoints in the shards' layout (K = 135
                                  for the BODY_135 family); omitted when P = 0. Parsing
                                  1620 numbers per person from JSON costs a loader more than the rest of
                                  the meta together; shards written by hand may keep ``keypoints`` in the json
  ``<key>.ignore.png``            uint8, 255 where the loss ignores the image (crowds, unlabelled people);
                                  omitted when nothing is ignored
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

import numpy as np

KEYPOINTS = "keypoints.npy"


@dataclass
class Record:
    """``meta`` holds: ``image_id`` (int), ``file_name``, ``width``, ``height``, ``source``, ``groups`` (the
    groups of the shards' layout the source labels, e.g. ``BODY_135.groups``) and ``people``: a list of
    ``{"id", "keypoints" (K x [x, y, v], v the codes of src.core.skeleton), "bbox" [x, y, w, h], "area",
    "center" [x, y], "scale" (estimated full-person height in px; augmentation resizes it to 288*m)}``."""

    key: str
    image: bytes
    ext: str  # "jpg" or "png"
    meta: dict
    ignore_png: bytes | None = None

    def members(self) -> dict:
        """The tar members (module docstring): the keypoints leave the json for one ``.npy`` array."""
        people = self.meta["people"]
        meta = dict(self.meta, people=[{k: v for k, v in p.items() if k != "keypoints"} for p in people])
        out = {"__key__": self.key, self.ext: self.image,
               "json": json.dumps(meta, separators=(",", ":"), allow_nan=False).encode()}
        if people:
            buf = io.BytesIO()
            np.save(buf, np.asarray([p["keypoints"] for p in people], np.float32))
            out[KEYPOINTS] = buf.getvalue()
        if self.ignore_png is not None:
            out["ignore.png"] = self.ignore_png
        return out


def read_meta(sample: dict, num_keypoints: int = 135) -> dict:
    """A shard sample's meta with every person's ``keypoints`` as a float32 ``[K, 3]`` array (K =
    ``num_keypoints``, the shards' layout's), from the ``.keypoints.npy`` member or, when there is none, from
    the json. Raises ``ValueError`` (json, npy or a shape other than K x 3 per person) or ``KeyError`` (a
    person without keypoints)."""
    meta = json.loads(sample["json"])
    people = meta["people"] = meta.get("people") or []
    if KEYPOINTS in sample:
        kps = np.load(io.BytesIO(sample[KEYPOINTS]), allow_pickle=False)
        if kps.shape[1:] != (num_keypoints, 3) or len(kps) != len(people):
            raise ValueError(f"{KEYPOINTS} holds an array of shape {kps.shape} for {len(people)} people "
                             f"of {num_keypoints} keypoints")
        for p, k in zip(people, kps.astype(np.float32, copy=False), strict=True):
            p["keypoints"] = k
        return meta
    for p in people:
        p["keypoints"] = np.asarray(p["keypoints"], np.float32)
        if p["keypoints"].shape != (num_keypoints, 3):
            raise ValueError(f"keypoints of person {p.get('id')} are not {num_keypoints} x 3")
    return meta
