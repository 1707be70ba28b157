"""Small shards written the way ``src/core/record.py`` says, for the loader tests (no real data needed).

``write_source(root, name, split, ...)`` writes ``root/<name>/<split>/<name>-<split>-%06d.tar`` plus a
``manifest.json`` listing them (as the shard writer does) and, for ``val``, a minimal ``gt.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import webdataset as wds

from src.core.record import KEYPOINTS
from src.core.skeleton import BODY_135


def person(centre, height: float, groups=("body",), rng=None, points: dict | None = None) -> dict:
    """One person record: labelled points of ``groups`` scattered in a box of ``height`` around ``centre``
    (or exactly ``points`` {index: (x, y)}), the rest code 4."""
    rng = rng or np.random.default_rng(0)
    kps = np.zeros((BODY_135.num_keypoints, 3), np.float32)
    kps[:, 2] = 4
    lab = BODY_135.labelled(list(groups))
    cx, cy = centre
    if points is None:
        n = int(lab.sum())
        kps[lab, 0] = cx + rng.uniform(-height / 4, height / 4, n)
        kps[lab, 1] = cy + rng.uniform(-height / 2, height / 2, n)
        kps[lab, 2] = 1
    else:
        kps[lab, 2] = 2
        for k, (x, y) in points.items():
            kps[k] = (x, y, 1)
    bbox = [cx - height / 4, cy - height / 2, height / 2, height]
    return {"id": 1, "keypoints": kps.tolist(), "bbox": bbox, "area": height * height / 2,
            "center": [cx, cy], "scale": float(height)}


def encode(image: np.ndarray, ext: str = "jpg") -> bytes:
    ok, buf = cv2.imencode("." + ext, image, [cv2.IMWRITE_JPEG_QUALITY, 90] if ext == "jpg" else [])
    assert ok
    return buf.tobytes()


def sample(key: str, image_id: int, source: str, groups, people: list[dict], image: np.ndarray,
           ext: str = "jpg", ignore: np.ndarray | None = None) -> dict:
    """The tar members of one record."""
    h, w = image.shape[:2]
    meta = {"image_id": image_id, "file_name": f"{key}.{ext}", "width": w, "height": h, "source": source,
            "groups": list(groups), "people": people}
    out = {"__key__": key, ext: encode(image, ext), "json": json.dumps(meta).encode()}
    if ignore is not None:
        out["ignore.png"] = encode(ignore, "png")
    return out


def write_source(root: Path, name: str, split: str = "train", n: int = 8, shards: int = 2, size=(64, 64),
                 groups=("body",), people: int = 1, ext: str = "png", first_id: int = 1, seed: int = 0,
                 corrupt: dict[int, str] | None = None) -> list[Path]:
    """``n`` samples over ``shards`` tars, keypoints in the json (hand-written shards). ``corrupt``
    {sample index: 'image' | 'json' | 'keypoints'} plants bad members."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / name / split
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{name}-{split}-{i:06d}.tar" for i in range(shards)]
    writers = [wds.TarWriter(str(p)) for p in paths]
    h, w = size
    gt_images = []
    for i in range(n):
        image = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
        ppl = [person((w / 2, h / 2), h / 2, groups, rng) for _ in range(people)] if groups else []
        rec = sample(f"{name}_{i:05d}", first_id + i, name, groups, ppl, image, ext)
        kind = (corrupt or {}).get(i)
        if kind == "image":
            rec[ext] = b"not an image at all"
        elif kind == "json":
            rec["json"] = b"{broken json"
        elif kind == "keypoints":  # the writer's .npy member, but not an array
            rec[KEYPOINTS] = b"not an npy array"
        writers[i % shards].write(rec)
        gt_images.append({"id": first_id + i, "width": w, "height": h, "file_name": f"{name}_{i:05d}.{ext}"})
    for wr in writers:
        wr.close()
    manifest = {"source": name, "split": split, "groups": sorted(groups),
                "shards": [{"name": p.name} for p in paths], "samples": n}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    if split == "val":
        (folder / "gt.json").write_text(json.dumps({"images": gt_images, "annotations": [],
                                                    "categories": [{"id": 1, "name": "person"}]}))
    return paths


ALL_GROUPS = tuple(BODY_135.groups)
