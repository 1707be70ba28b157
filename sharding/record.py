"""One sample on its way into a shard: what every converter yields and the shard writer stores.

Shard members per sample (WebDataset keys share ``key``):
  ``<key>.jpg`` or ``<key>.png``  the original image bytes (JPEG sources are never re-encoded)
  ``<key>.json``                  ``meta``, see ``Record.meta`` below
  ``<key>.ignore.png``            uint8, 255 where the loss ignores the image (crowds, unlabelled people);
                                  omitted when nothing is ignored
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Record:
    """``meta`` holds: ``image_id`` (int), ``file_name``, ``width``, ``height``, ``source``, ``groups`` (the
    BODY_135 groups the source labels, see ``src.skeleton.GROUPS``) and ``people``: a list of
    ``{"id", "keypoints" (135 x [x, y, v], v the codes of src.skeleton), "bbox" [x, y, w, h], "area",
    "center" [x, y], "scale" (estimated full-person height in px; augmentation resizes it to 288*m)}``."""

    key: str
    image: bytes
    ext: str  # "jpg" or "png"
    meta: dict
    ignore_png: bytes | None = None
