"""One shard sample from tar bytes to arrays, and a list of augmented samples to one batch.

Decode follows the record contract of ``src/core/record.py``: ``<key>.jpg|png`` (decoded BGR, OpenPose's
channel order), ``<key>.json`` (meta) with ``<key>.keypoints.npy`` (or keypoints in the json), optional
``<key>.ignore.png`` (255 = ignored). A sample that cannot be decoded raises ``BadSample``; the streams skip
it and count it (``datamodules.mixing.Counter``).

Batch contract (``collate``), what any loader must deliver for ``src.training.module.PoseModule`` to train:
  ``image``      ``[B, 3, S, S]`` uint8 BGR (OpenPose's order), stored channels_last (no transpose copy in the
                 worker). The network input ``x / 256 - 0.5`` (``src.core.geometry.normalise``) is made on the
                 device: a quarter of the bytes to copy that float would need.
  ``keypoints``  ``[B, P, K, 3]``, K the points of the shards' layout (135 for the BODY_135 family), P the
                 most people in this batch (at least 1); padding rows are (0, 0, 2).
  ``labelled``   ``bool[B, K]``: the points the sample's source labels; all True for a background-only
                 sample, whose every channel trains as background (spec §3.4 step 5).
  ``ignore``     ``[B, S/8, S/8]``: the fraction of each cell ignored.
  ``key``, ``source``: lists of str; ``skipped``: bad samples its worker dropped since its previous batch.
  ``target``, ``weight`` ``[B, C, S/8, S/8]`` (C = K + 2P of the run's layout): added on the device by the
                 datamodule's ``on_after_batch_transfer`` (unpacked from the workers' ``packed_targets``, or
                 computed).
Validation batches add ``image_id``, ``gt`` (list: the COCO(-WholeBody) json each image is scored against),
``scale`` and ``offset`` ``[B, 2]`` (x, y; ``orig = (input - offset) / scale``), ``size`` and ``input_size``
``[B, 2]`` (h, w of the original and of the resized image).
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from src.core import image_io
from src.core.record import read_meta
from src.core.skeleton import Layout

IMAGE_KEYS = ("jpg", "jpeg", "png")


class BadSample(ValueError):
    """A shard member that cannot be decoded or does not follow the record contract."""


def decode(raw: dict, reduce: int = 1, num_keypoints: int = 135
           ) -> tuple[np.ndarray, dict, np.ndarray | None]:
    """Tar members of one sample -> (BGR image, meta, ignore mask or None). ``reduce`` in {1, 2, 4, 8} decodes
    a JPEG at that fraction of its size; meta coordinates are not rescaled (for background patches only).
    ``num_keypoints``: K of the shards' layout, every person's keypoints are checked against it."""
    key = raw.get("__key__", "?")
    ext = next((k for k in IMAGE_KEYS if k in raw), None)
    if ext is None or "json" not in raw:
        raise BadSample(f"sample {key!r}: needs an image (.jpg/.png) and a .json member, has {sorted(raw)}")
    flags = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
             8: cv2.IMREAD_REDUCED_COLOR_8}[reduce]
    try:
        image = image_io.decode(raw[ext], f"sample {key!r} {ext}", flags)
    except image_io.ImageError as err:
        raise BadSample(str(err)) from None
    try:
        meta = read_meta(raw, num_keypoints)
        for p in meta["people"]:
            p["center"], p["bbox"] = [float(v) for v in p["center"]], [float(v) for v in p["bbox"]]
            values = {"keypoints": p["keypoints"], "bbox": p["bbox"], "center": p["center"],
                      "scale": p.get("scale", 1.0)}
            bad = [k for k, v in values.items() if not np.isfinite(np.asarray(v, np.float64)).all()]
            if bad:  # written by another tool or an older version: skipped and counted, never trained as 0
                raise BadSample(f"sample {key!r}: person {p.get('id')} has non-finite {bad[0]}")
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise BadSample(f"sample {key!r}: bad meta or keypoints ({exc})") from exc
    ignore = None
    if "ignore.png" in raw:
        ignore = cv2.imdecode(np.frombuffer(raw["ignore.png"], np.uint8), cv2.IMREAD_GRAYSCALE)
        if ignore is None:
            raise BadSample(f"sample {key!r}: ignore.png does not decode")
        if ignore.shape != image.shape[:2]:
            ignore = cv2.resize(ignore, image.shape[1::-1], interpolation=cv2.INTER_NEAREST)
    return image, meta, ignore


def labelled_of(groups: list[str], background_only: bool, layout: Layout) -> np.ndarray:
    """Bool[K]: the channels a sample trains (all of them, as background, for a background-only sample)."""
    return np.ones(layout.num_keypoints, bool) if background_only else layout.labelled(groups)


def pad_people(kps_list: list[np.ndarray]) -> np.ndarray:
    """``[P_i, K, 3]`` arrays -> ``[B, P, K, 3]`` with P = max(P_i, 1); padding rows are (0, 0, 2)."""
    p = max([len(k) for k in kps_list] + [1])
    out = np.zeros((len(kps_list), p, kps_list[0].shape[1], 3), np.float32)
    out[..., 2] = 2
    for i, k in enumerate(kps_list):
        out[i, :len(k)] = k
    return out


def _batch_buffer(shape: tuple[int, ...]) -> torch.Tensor:
    """An empty uint8 tensor for a batch of images; in a loader worker it is made in shared memory, so that
    sending it to the main process passes a handle instead of copying every image a second time."""
    out = torch.empty(shape, dtype=torch.uint8)
    return out.share_memory_() if torch.utils.data.get_worker_info() is not None else out


def collate(samples: list[dict]) -> dict:
    """Augmented samples (all the same crop size) -> one batch dict (module docstring), image still uint8."""
    images = _batch_buffer((len(samples), *samples[0]["image"].shape))        # (B, S, S, 3)
    np.stack([s["image"] for s in samples], out=images.numpy())
    return {
        "image": images.permute(0, 3, 1, 2),  # (B, 3, S, S) in channels_last memory
        "keypoints": torch.from_numpy(pad_people([s["keypoints"] for s in samples])),
        "labelled": torch.from_numpy(np.stack([s["labelled"] for s in samples])),
        "ignore": torch.from_numpy(np.stack([s["ignore"] for s in samples])),
        "key": [s["key"] for s in samples],
        "source": [s["source"] for s in samples],
        "skipped": torch.tensor(sum(s.get("skipped", 0) for s in samples)),
    }


def collate_eval(samples: list[dict]) -> dict:
    """Validation samples of different sizes -> one batch, padded right/bottom to the largest."""
    h = max(s["image"].shape[0] for s in samples)
    w = max(s["image"].shape[1] for s in samples)
    images = np.zeros((len(samples), h, w, 3), np.uint8)
    ignore = np.ones((len(samples), h // 8, w // 8), np.float32)
    for i, s in enumerate(samples):
        ih, iw = s["image"].shape[:2]
        images[i, :ih, :iw] = s["image"]
        ignore[i, :ih // 8, :iw // 8] = s["ignore"]
    batch = collate([dict(s, image=images[i], ignore=ignore[i]) for i, s in enumerate(samples)])
    batch["image_id"] = torch.tensor([s["image_id"] for s in samples], dtype=torch.int64)
    batch["gt"] = [s["gt"] for s in samples]
    for name in ("scale", "offset", "size", "input_size"):
        batch[name] = torch.as_tensor(np.array([s[name] for s in samples]))
    return batch

