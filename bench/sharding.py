"""Benchmark of the shard writer: images per second sharded, in one process (``shard.workers=0``), by the
wall clock and per CPU-second of this process (the steadier figure on a shared machine).

* COCO-size JPEGs: 200 640x480 JPEGs (~100-150 kB, as COCO's) with a COCO keypoints json of 2-4 people per
  image, one crowd region on every fifth, through ``sharding.coco.CocoBody``: read, full-decode check, meta,
  ignore mask, tar write, sha256.
* The synthetic world: ``synth_*`` kinds in the default mix at the default size (256), rendering included.

``python -m bench.sharding`` prints one JSON line; ``run()`` returns the dict for ``python -m bench``.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from sharding.coco import CocoBody
from sharding.synthetic_source import Synthetic
from sharding.writer import Settings, build_split

N_COCO, W, H = 200, 640, 480
N_SYNTH = 100
SYNTH_MIX = {"synth_body": 0.3, "synth_wholebody": 0.3, "synth_face": 0.15, "synth_hand": 0.15,
             "synth_background": 0.1}


def make_coco_like(folder: Path, n: int = N_COCO, seed: int = 0) -> Path:
    """``n`` photo-like JPEGs (smooth colour fields plus grain, quality 90) and their person json."""
    rng = np.random.default_rng(seed)
    images, anns = [], []
    for i in range(n):
        low = rng.integers(0, 255, (H // 16, W // 16, 3), np.uint8)
        img = cv2.resize(low, (W, H), interpolation=cv2.INTER_CUBIC)
        img = cv2.add(img, rng.integers(0, 40, (H, W, 3), np.uint8))
        name = f"{i:012d}.jpg"
        cv2.imwrite(str(folder / name), img, [cv2.IMWRITE_JPEG_QUALITY, 90])
        images.append({"id": i + 1, "file_name": name, "width": W, "height": H})
        for j in range(int(rng.integers(2, 5))):
            x, y, bw, bh = rng.uniform(0, W - 150), rng.uniform(0, H - 300), 150.0, 300.0
            kp = np.c_[rng.uniform(x, x + bw, 17), rng.uniform(y, y + bh, 17), rng.choice([0, 1, 2], 17)]
            kp[kp[:, 2] == 0, :2] = 0
            poly = [x, y, x + bw, y, x + bw, y + bh, x, y + bh]
            anns.append({"id": 10 * i + j, "image_id": i + 1, "category_id": 1, "iscrowd": 0,
                         "bbox": [x, y, bw, bh], "area": bw * bh * 0.6,
                         "num_keypoints": int((kp[:, 2] > 0).sum()),
                         "keypoints": kp.reshape(-1).tolist(), "segmentation": [poly]})
        if i % 5 == 0:
            anns.append({"id": 10 * i + 9, "image_id": i + 1, "category_id": 1, "iscrowd": 1,
                         "bbox": [0, 0, 100, 100], "area": 1e4, "num_keypoints": 0, "keypoints": [0] * 51,
                         "segmentation": [[0, 0, 100, 0, 100, 100, 0, 100]]})
    (folder / "ann.json").write_text(json.dumps({"images": images, "annotations": anns}))
    return folder


def run() -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src = tmp / "coco"
        src.mkdir()
        make_coco_like(src)
        mean_kb = np.mean([p.stat().st_size for p in src.glob("*.jpg")]) / 1024
        start, cpu = time.perf_counter(), time.process_time()
        _, m = build_split("bench_coco", CocoBody(train={"ann": src / "ann.json", "images": src}), "train",
                           tmp / "out", Settings())
        coco_s, coco_cpu = time.perf_counter() - start, time.process_time() - cpu
        assert m["samples"] == N_COCO
        synth_n, start, cpu = 0, time.perf_counter(), time.process_time()
        for kind in SYNTH_MIX:
            conv = Synthetic(kind, train_images=N_SYNTH, val_images=0, mix=SYNTH_MIX)
            if conv.configured():
                synth_n += build_split(kind, conv, "train", tmp / "out", Settings())[1]["samples"]
        synth_s, synth_cpu = time.perf_counter() - start, time.process_time() - cpu
    return {
        "sharding_coco_images_per_s": round(N_COCO / coco_s, 1),
        "sharding_coco_images_per_cpu_s": round(N_COCO / coco_cpu, 1),
        "sharding_coco_mean_jpeg_kb": round(float(mean_kb), 1),
        "sharding_synthetic_images_per_s": round(synth_n / synth_s, 1),
        "sharding_synthetic_images_per_cpu_s": round(synth_n / synth_cpu, 1),
        "sharding_synthetic_size": 256,
    }


if __name__ == "__main__":
    print(json.dumps(run()))
