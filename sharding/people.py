"""What every converter does per image and per person: read and check the image, turn BODY_135 keypoints
into a person entry (box, area, centre, scale), and draw the ignore mask.

Skip-and-report versus stop: a problem with one image or one annotation raises ``SkipRecord`` (the writer
counts it, keeps the first examples, and goes on); a problem with the structure of an input file raises
``InputError`` naming the file and field, before anything is written.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from src.core import image_io

# Full-person height as a multiple of a lone hand's or face's size, so that "scale" means the same thing in
# every source and the loader's 288*m rule (spec §4.3) gives hands and faces their anatomical size at m = 1.
# A hand (wrist to middle fingertip, the longest side of its keypoint box) is about 1/9 of body height; the
# 68-landmark box (brow to chin) about 1/10. Hand and face policies then pick larger m (spec §4.5 ranges).
HAND_TO_PERSON = 9.0
FACE_TO_PERSON = 10.0

# A labelled point further outside the image than this fraction of the image's longer side means the
# annotation does not belong to this image (or is corrupt): the record is skipped. Nearer points become v=2.
FAR_OUTSIDE = 0.5

IMAGE_EXT = {"jpeg": "jpg", "jpg": "jpg", "png": "png"}


class SkipRecord(Exception):
    """One record is dropped and reported under ``reason`` (e.g. ``missing_file``); the run goes on."""

    def __init__(self, reason: str, item: str, detail: str = ""):
        super().__init__(f"{reason}: {item} {detail}".strip())
        self.reason, self.item, self.detail = reason, str(item), detail


class InputError(ValueError):
    """An input file is structurally wrong (not JSON, a required field missing): the run stops."""


def read_image(path: Path, width: int | None = None, height: int | None = None
               ) -> tuple[bytes, str, int, int]:
    """The image's original bytes, its shard extension and its size, after a full decode that proves it is
    readable. JPEG and PNG keep their bytes; anything else is re-encoded as PNG. A size that disagrees with
    the annotation's ``width``/``height`` is a skip: the keypoints would not fit the pixels."""
    path = Path(path)
    if not path.is_file():
        raise SkipRecord("missing_file", path)
    data = path.read_bytes()
    try:
        image_io.check(data, path)
    except image_io.ImageError as e:
        raise SkipRecord("unreadable_image", path, f"({e.reason})") from None
    try:
        with Image.open(io.BytesIO(data)) as im:
            w, h = im.size
            fmt = (im.format or "").lower()
            if fmt == "jpeg":
                im.draft("L", (max(1, w // 8), max(1, h // 8)))  # DCT-domain 1/8 decode: checks every block
            im.load()
    except Exception as e:  # PIL raises several types for truncated or foreign bytes
        raise SkipRecord("unreadable_image", path, f"({type(e).__name__}: {e})") from None
    if (width is not None and int(width) != w) or (height is not None and int(height) != h):
        raise SkipRecord("size_mismatch", path, f"(file {w}x{h}, annotation {width}x{height})")
    ext = IMAGE_EXT.get(fmt)
    if ext is None:
        ok, enc = cv2.imencode(".png", cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED),
                               [cv2.IMWRITE_PNG_COMPRESSION, 1])  # fast to decode, as ignore_png
        if not ok:
            raise SkipRecord("unreadable_image", path, f"(format {fmt})")
        data, ext = enc.tobytes(), "png"
    return data, ext, w, h


def numbers(values, item: str, field: str, dtype=np.float32) -> np.ndarray:
    """``values`` (a list, possibly nested) as float32; a value that is not a number (a string, None, a
    dict) skips the record as ``non_numeric_value``, naming ``item`` (file and annotation) and ``field``.
    Non-finite numbers pass: where they are allowed (an unlabelled point) the caller decides."""
    def leaves(v):
        if isinstance(v, (list, tuple, np.ndarray)):
            for x in v:
                yield from leaves(x)
        else:
            yield v

    for i, v in enumerate(leaves(values)):
        if isinstance(v, str) or not isinstance(v, (int, float, np.number)):
            raise SkipRecord("non_numeric_value", item, f"({field}[{i}] = {v!r})")
    try:
        return np.asarray(values, dtype)
    except (TypeError, ValueError) as e:  # ragged nesting
        raise SkipRecord("non_numeric_value", item, f"({field}: {e})") from None


def check_box(bbox, width: int, height: int, item: str, field: str = "bbox") -> list[float]:
    """``[x, y, w, h]`` as floats after the checks every source's boxes pass: four numbers
    (``non_numeric_value``), finite (``non_finite_box``), positive width and height (``empty_box``) and
    overlapping the ``width`` x ``height`` image (``box_outside_image``); else the record is skipped."""
    box = numbers(bbox, item, field, np.float64).reshape(-1)
    if box.size != 4:
        raise SkipRecord("non_numeric_value", item, f"({field} has {box.size} values, expected 4)")
    x, y, w, h = (float(v) for v in box)
    if not all(math.isfinite(v) for v in (x, y, w, h)):
        raise SkipRecord("non_finite_box", item, f"({field} {[x, y, w, h]})")
    if w <= 0 or h <= 0:
        raise SkipRecord("empty_box", item, f"({field} {[x, y, w, h]}: width and height must be > 0)")
    if x >= width or y >= height or x + w <= 0 or y + h <= 0:
        raise SkipRecord("box_outside_image", item, f"({field} {[x, y, w, h]}, image {width}x{height})")
    return [x, y, w, h]


def non_finite(value, path: str = "") -> str | None:
    """The path of the first NaN or infinite number in a JSON-like ``value`` (``people[0].bbox[3]``), or
    None. The last guard before a record's meta is written: a shard and gt.json hold finite numbers only."""
    if isinstance(value, float):
        return None if math.isfinite(value) else path or "value"
    if isinstance(value, dict):
        items = ((f"{path}.{k}" if path else str(k), v) for k, v in value.items())
    elif isinstance(value, (list, tuple)):
        items = ((f"{path}[{i}]", v) for i, v in enumerate(value))
    else:
        return None
    return next((p for k, v in items if (p := non_finite(v, k)) is not None), None)


def clip_to_image(kp: np.ndarray, width: int, height: int, item: str) -> np.ndarray:
    """Labelled points outside the image become background (v=2, spec §1.3); NaN or far-away points skip."""
    kp = np.array(kp, np.float32)
    lab = kp[:, 2] <= 1
    xy = kp[lab, :2]
    if not np.isfinite(xy).all():
        raise SkipRecord("non_finite_keypoint", item)
    margin = FAR_OUTSIDE * max(width, height)
    far = (xy < -margin).any(1) | (xy[:, 0] > width + margin) | (xy[:, 1] > height + margin)
    if far.any():
        raise SkipRecord("far_outside_image", item, f"(point {xy[far][0].tolist()}, "
                                                    f"image {width}x{height})")
    out = lab & ((kp[:, 0] < 0) | (kp[:, 1] < 0) | (kp[:, 0] > width - 1) | (kp[:, 1] > height - 1))
    kp[out] = (0, 0, 2)
    return kp


def keypoint_box(kp: np.ndarray) -> list[float] | None:
    """``[x, y, w, h]`` around the labelled points (v <= 1), or None when nothing is labelled."""
    xy = kp[kp[:, 2] <= 1, :2]
    if not len(xy):
        return None
    x0, y0 = xy.min(0)
    x1, y1 = xy.max(0)
    return [float(x0), float(y0), float(x1 - x0), float(y1 - y0)]


def labelled_count(kp: np.ndarray) -> int:
    return int((kp[:, 2] <= 1).sum())


def person(pid: int, kp: np.ndarray, bbox: list[float], scale: float, area: float | None = None,
           center: list[float] | None = None) -> dict:
    """One ``people`` entry of ``Record.meta``; the centre defaults to the box centre (spec §4.2)."""
    x, y, w, h = (float(v) for v in bbox)
    if center is None:
        center = [x + w / 2, y + h / 2]
    xy = np.round(np.asarray(kp[:, :2], np.float64), 2).tolist()
    return {
        "id": int(pid),
        "keypoints": [[x, y, v] for (x, y), v in zip(xy, kp[:, 2].astype(int).tolist(), strict=True)],
        "bbox": [round(v, 2) for v in (x, y, w, h)],
        "area": round(float(area if area is not None else w * h), 2),
        "center": [round(float(c), 2) for c in center],
        "scale": round(float(max(scale, 1.0)), 2),
    }


def part_person(pid: int, kp: np.ndarray, factor: float, side: str = "max", bbox: list[float] | None = None,
                area: float | None = None) -> dict:
    """A lone hand or face: centred on its keypoints, scale = ``factor`` x the box's longer side (``max``)
    or height (``height``)."""
    box = keypoint_box(kp)
    if box is None:
        raise ValueError("a hand or face person needs a labelled point")
    size = max(box[2], box[3]) if side == "max" else box[3]
    center = [box[0] + box[2] / 2, box[1] + box[3] / 2]
    return person(pid, kp, bbox or box, factor * max(size, 1.0), area, center)


def ignore_png(mask: np.ndarray | None) -> bytes | None:
    """uint8 PNG with 255 where the loss ignores the image, or None when nothing is ignored. Compression
    level 1 (zlib's default strategy): OpenCV's default PNG settings (run-length matches) decode a 640x480
    mask about 4x slower, and a loader worker decodes one per sample that has a mask."""
    if mask is None or not mask.any():
        return None
    ok, enc = cv2.imencode(".png", np.where(mask, 255, 0).astype(np.uint8), [cv2.IMWRITE_PNG_COMPRESSION, 1])
    assert ok
    return enc.tobytes()


def int_id(text: str, fallback: int) -> int:
    """A numeric file stem as the image id (COCO/MPII style), else ``fallback``."""
    stem = Path(text).stem
    return int(stem) if stem.isdigit() and len(stem) < 16 else fallback


def finite(value, item: str, field: str) -> float:
    """``value`` as a finite float; else the record is skipped (non_numeric_value, non_finite_value)."""
    if isinstance(value, (str, bytes)) or value is None:
        raise SkipRecord("non_numeric_value", item, f"({field} = {value!r})")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise SkipRecord("non_numeric_value", item, f"({field} = {value!r})") from None
    if not math.isfinite(v):
        raise SkipRecord("non_finite_value", item, f"({field}={value})")
    return v
