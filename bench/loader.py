"""Benchmark of the training loader on COCO-size JPEG shards: decode + augment (480x480 crops, background
padding) and decode + augment + targets, per CPU core, plus the peak RSS of a loader worker.

Shards are generated first by the project's shard writer, so the bench reads what ``make shards`` writes
(640x480 JPEGs of smooth colour fields, shapes and grain, about COCO's file size; 1-4 people 60-400 px tall
with body + foot labelled; a third with an ignore mask; a background source).
Throughput is samples per CPU-second (user + system) of one DataLoader worker process, i.e. the rate of
one core, so it depends less on what else the machine runs than the wall-clock rate given beside it (a busy
machine still slows every core down). It includes the worker's copy of every batch into shared memory; worker
targets travel packed (``datamodules.packed_targets``), and unpacking them on the main process's CPU is given
as ``loader_targets_unpack_ms_per_sample`` (on a GPU run the datamodule's ``on_after_batch_transfer``
unpacks them there). The ``*_compute_*`` figures iterate the same stream in this process (the work without
the hand-off).

``python -m bench.loader`` prints one JSON line; ``run()`` returns the dict for ``python -m bench``.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import psutil
import torch

from datamodules.packed_targets import unpack
from datamodules.wholebody import WholeBodyDataModule
from sharding.keypoints import from_coco23
from sharding.people import ignore_png
from sharding.source import Plan, Source
from sharding.writer import Settings, build_split
from src.core.record import Record

CROP, BATCH, IMAGES, SHARDS = 480, 10, 96, 4


def _image(rng: np.random.Generator, h: int = 480, w: int = 640) -> np.ndarray:
    small = rng.integers(0, 255, (6, 8, 3), dtype=np.uint8)
    image = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    for _ in range(12):
        colour = tuple(int(c) for c in rng.integers(0, 255, 3))
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        cv2.circle(image, (x, y), int(rng.integers(10, 80)), colour, -1)
    grain = rng.normal(0, 6, (h, w, 1))
    return np.clip(image + grain, 0, 255).astype(np.uint8)


def _person(rng: np.random.Generator, h: int = 480, w: int = 640) -> dict:
    height = float(rng.uniform(60, 400))
    cx, cy = float(rng.uniform(50, w - 50)), float(rng.uniform(50, h - 50))
    pts = np.c_[cx + rng.uniform(-0.25, 0.25, 23) * height, cy + rng.uniform(-0.5, 0.5, 23) * height,
                rng.choice([0, 1, 2], 23, p=[0.3, 0.1, 0.6])]
    kps = from_coco23(pts.reshape(-1))
    box = [cx - height / 4, cy - height / 2, height / 2, height]
    return {"id": 1, "keypoints": kps.tolist(), "bbox": box, "area": height * height / 2, "center": [cx, cy],
            "scale": height}


class _BenchSource(Source):
    """COCO-like records for ``sharding.writer.build_split``, so the bench reads what ``make shards`` writes:
    ``people`` True gives 1-4 people with body + foot labelled and an ignore mask on every third image,
    False gives background images (nobody)."""

    def __init__(self, people: bool, seed: int):
        super().__init__(people=people, seed=seed)
        self.people, self.seed = people, seed
        self.groups = ["body", "foot"] if people else []

    def plan(self, split: str) -> Plan:
        return Plan(stream=self._records(), total=IMAGES)

    def _records(self):
        rng = np.random.default_rng(self.seed)
        name = "coco" if self.people else "coco_background"
        for i in range(IMAGES):
            jpg = cv2.imencode(".jpg", _image(rng), [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
            ppl = [_person(rng) for _ in range(int(rng.integers(1, 5)))] if self.people else []
            meta = {"image_id": i + 1, "file_name": f"{i:06d}.jpg", "width": 640, "height": 480,
                    "groups": list(self.groups), "people": ppl}
            mask = np.zeros((480, 640), np.uint8)
            if self.people and i % 3 == 0:
                cv2.rectangle(mask, (0, 0), (160, 120), 255, -1)
            yield Record(f"{name}_{i:06d}", jpg, "jpg", meta, ignore_png(mask))


def write_shards(root: Path, seed: int = 0) -> int:
    """``coco`` (people) and ``coco_background`` (nobody) train shards, written by the project's shard
    writer; returns the mean bytes per record (JPEG, json, ignore PNG, tar headers)."""
    settings = Settings(max_count=IMAGES // SHARDS)
    sizes = []
    for name, people in (("coco", True), ("coco_background", False)):
        _, manifest = build_split(name, _BenchSource(people, seed), "train", root, settings)
        sizes.append(sum(s["bytes"] for s in manifest["shards"]) / manifest["samples"])
    return int(np.mean(sizes))


def _datamodule(root: Path, workers: int = 0, targets=None) -> WholeBodyDataModule:
    return WholeBodyDataModule({"coco": {"probability": 1.0, "policy": "body"},
                                "coco_background": {"probability": 0.0, "policy": "background"}},
                               root=str(root), crop=CROP, batch_size=BATCH, batches_per_epoch=10**6,
                               num_workers=workers, targets=targets,
                               targets_on="worker" if targets is not None else "device")


def compute_rate(root: Path, batches: int, targets=None) -> float:
    """Samples per CPU-second of the same stream iterated in this process: the work alone, no IPC."""
    torch.set_num_threads(1)
    stream = iter(_datamodule(root, targets=targets).train_dataset())
    next(stream)
    cpu = time.process_time()
    for _ in range(batches):
        next(stream)
    return batches * BATCH / (time.process_time() - cpu)


def measure(root: Path, batches: int, targets=None) -> tuple[float, float, float, float]:
    """One loader worker (a real DataLoader process, so the copy of each batch into shared memory counts):
    (samples per CPU-second of the worker, samples per wall-second, the worker's peak RSS in MiB, CPU ms per
    sample to unpack its targets in this process)."""
    before = {p.pid for p in psutil.Process().children()}  # workers of an earlier loader may still be exiting
    loader = iter(_datamodule(root, workers=1, targets=targets).train_dataloader())
    for _ in range(3):  # start-up, shuffle buffers, prefetch queue full
        next(loader)
    (worker,) = [p for p in psutil.Process().children() if p.pid not in before]
    cpu0, wall0, peak, unpacking = sum(worker.cpu_times()[:2]), time.perf_counter(), 0, 0.0
    for _ in range(batches):  # the prefetch queue is as full at the end as at the start
        batch = next(loader)
        peak = max(peak, worker.memory_info().rss)
        if targets is not None:
            start = time.thread_time()
            unpack(batch["packed_targets"])
            unpacking += time.thread_time() - start
    cpu, wall = sum(worker.cpu_times()[:2]) - cpu0, time.perf_counter() - wall0
    n = batches * BATCH
    return n / cpu, n / wall, peak / 2**20, 1e3 * unpacking / n


def run(batches: int = 30) -> dict:
    from src.targets import Targets
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        record_bytes = write_shards(root)
        plain = measure(root, batches)
        with_targets = measure(root, batches, Targets())
        return {
            "loader_samples_per_s_per_core": round(plain[0], 1),
            "loader_targets_samples_per_s_per_core": round(with_targets[0], 1),
            "loader_worker_peak_rss_mib": round(plain[2], 1),
            "loader_targets_worker_peak_rss_mib": round(with_targets[2], 1),
            "loader_targets_unpack_ms_per_sample": round(with_targets[3], 2),
            "loader_samples_per_s_one_worker_wall": round(plain[1], 1),
            "loader_compute_samples_per_s_per_core": round(compute_rate(root, batches), 1),
            "loader_targets_compute_samples_per_s_per_core": round(compute_rate(root, batches, Targets()), 1),
            "loader_bench": f"{CROP}x{CROP} crops, batch {BATCH}, 640x480 JPEG, ~{record_bytes // 1000} kB "
                            "per record, 1-4 people, background padding; rates per CPU-second of one loader "
                            "worker",
        }


if __name__ == "__main__":
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    print(json.dumps(run(int(sys.argv[1]) if len(sys.argv) > 1 else 30)))
