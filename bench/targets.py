"""Benchmark of src.targets: ms per sample for a batch of 10 at 480x480, 3 people with all 135 points
labelled, on ONE CPU thread, beside the floor set by writing the outputs (their bytes / a memcpy speed
measured in the same run).

``python -m bench.targets`` prints one JSON line; ``run()`` returns the dict for ``python -m bench``.
"""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
import time

import torch

from datamodules.streams import keep_freed_memory
from src.core.skeleton import BODY_135
from src.targets import Targets

BATCH, PEOPLE, SIZE = 10, 3, 480


def _template() -> torch.Tensor:
    """[135, 2] px: a standing whole-body person 288 px tall (the augmentation's m=1 size), nose at 0, 0."""
    body = [(0, 0), (6, -5), (-6, -5), (14, -2), (-14, -2), (30, 40), (-30, 40), (38, 90), (-38, 90),
            (42, 135), (-42, 135), (20, 135), (-20, 135), (22, 205), (-22, 205), (22, 262), (-22, 262),
            (0, 28), (0, -30), (30, 282), (38, 280), (20, 272), (-30, 282), (-38, 280), (-20, 272)]
    pts = torch.zeros(BODY_135.num_keypoints, 2)
    pts[: len(body)] = torch.tensor(body, dtype=torch.float32)                           # body, MPII, foot
    reach = torch.tensor([[7, 13, 18, 22]] + [[10, 18, 24, 29]] * 4, dtype=torch.float32)   # px from wrist
    angle = torch.tensor([-0.9, -0.3, 0.0, 0.25, 0.5])[:, None]                            # finger fan, rad
    fingers = torch.stack([reach * angle.sin(), reach * angle.cos()], -1).reshape(20, 2)
    left, right = BODY_135.hand("left"), BODY_135.hand("right")                          # wrist, then hand
    pts[left[1:]] = pts[left[0]] + fingers * torch.tensor([-1.0, 1.0])                  # mirrored fan
    pts[right[1:]] = pts[right[0]] + fingers
    theta = math.pi - torch.arange(17) * math.pi / 16
    face = [torch.stack([18 * theta.cos(), 20 * theta.sin() - 4], -1)]                    # jaw, nose at 0
    for x0 in (-15, 3):
        face.append(torch.stack([torch.linspace(x0, x0 + 12, 5), torch.full((5,), -11.0)], -1))   # brows
    face.append(torch.stack([torch.zeros(4), torch.linspace(-7, 0, 4)], -1))              # nose bridge
    face.append(torch.stack([torch.linspace(-5, 5, 5), torch.full((5,), 3.0)], -1))        # nostrils
    for n, cx, cy, rx, ry in ((6, -8, -5, 4, 2), (6, 8, -5, 4, 2), (12, 0, 9, 8, 4), (8, 0, 9, 5, 2)):
        phi = torch.arange(n) * 2 * math.pi / n
        face.append(torch.stack([cx + rx * phi.cos(), cy + ry * phi.sin()], -1))          # eyes, mouth
    face.append(torch.tensor([[-8.0, -5.0], [8.0, -5.0]]))                                 # pupils
    pts[BODY_135.group_slice("face")] = torch.cat(face)
    return pts


def scene(gen: torch.Generator, batch: int = BATCH, people: int = PEOPLE, size: int = SIZE) -> torch.Tensor:
    """[batch, people, 135, 3]: the template person scaled 0.8-1.2x, rotated +-30 deg, with +-3 px jitter,
    placed anywhere in the crop (points past the border clamped onto it), all 135 points visible (v=1)."""
    shape = (batch, people, 1)
    scale = 0.8 + 0.4 * torch.rand(shape, generator=gen)
    angle = (torch.rand(shape, generator=gen) - 0.5) * math.pi / 3
    x, y = (_template() - torch.tensor([0.0, 140.0])).unbind(-1)                   # about the hips
    cos, sin = angle.cos(), angle.sin()
    xy = scale[..., None] * torch.stack([x * cos - y * sin, x * sin + y * cos], -1)
    xy = xy + torch.rand(batch, people, 1, 2, generator=gen) * size
    xy = xy + (torch.rand(xy.shape, generator=gen) - 0.5) * 6
    return torch.cat([xy.clamp(0, size - 1), torch.ones(batch, people, BODY_135.num_keypoints, 1)], dim=-1)


def mixed_sources(kp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The same people as a training batch sees them: 5 COCO-WholeBody samples (every third person's face and
    hands not annotated: code 3), 3 COCO+foot samples and 2 hand-set samples; codes 4 where a source lacks a
    point. Exercises every mask of spec §3.4 with the default ``paper`` policy."""
    wholebody = ["body", "foot", "face", "lhand", "rhand"]
    kinds = [wholebody] * 5 + [["body", "foot"]] * 3 + [["lhand", "rhand"]] * 2
    labelled = torch.stack([torch.from_numpy(BODY_135.labelled(g)) for g in kinds])[: len(kp)]
    kp = kp.clone()
    kp[..., 2] = torch.where(labelled[:, None, :], kp[..., 2], 4.0)
    kp[:5, ::3, BODY_135.groups["lhand"].start:, 2] = 3                             # hands and face
    return kp, labelled


def _median_ms(fn, repeats: int) -> tuple[float, float]:
    """Median wall and median CPU time of this thread, in ms."""
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.thread_time()
        fn()
        wall.append(time.perf_counter() - start)
        cpu.append(time.thread_time() - start_cpu)
    return 1000 * statistics.median(wall), 1000 * statistics.median(cpu)


def measure(repeats: int = 15, mixed: bool = True) -> dict:
    """Times the default ``Targets`` in this process, on one thread (the mixed-source scene too when
    ``mixed``), and a memcpy of the outputs' size for the bound."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        kp = scene(torch.Generator().manual_seed(0))
        everything = torch.ones(BATCH, BODY_135.num_keypoints, dtype=torch.bool)
        targets = Targets()
        ignore = torch.zeros(BATCH, *targets.grid_size((SIZE, SIZE)))
        out = {}
        scenes = {"": (kp, everything)} | ({"mixed_": mixed_sources(kp)} if mixed else {})
        for name, (points, labelled) in scenes.items():
            call = lambda p=points, l=labelled: targets(p, l, ignore, (SIZE, SIZE))  # noqa: E731, E741
            target, weight = call()                                                 # warm-up
            wall, cpu = _median_ms(call, repeats)
            out[f"targets_{name}ms_per_sample"] = round(wall / BATCH, 3)
            out[f"targets_{name}cpu_ms_per_sample"] = round(cpu / BATCH, 3)
        out_bytes = (target.numel() + weight.numel()) * target.element_size() / BATCH
        src, dst = torch.rand(2 * target.numel()), torch.empty(2 * target.numel())
        dst.copy_(src)
        copy_ms = _median_ms(lambda: dst.copy_(src), repeats)[0]
        bytes_per_ms = src.numel() * src.element_size() / copy_ms
    finally:
        torch.set_num_threads(threads)
    return out | {"targets_write_bound_ms": round(out_bytes / bytes_per_ms, 3),
                  "targets_memcpy_gb_per_s": round(bytes_per_ms / 1e6, 2)}


def run(repeats: int = 15) -> dict:
    """The targets' numbers as a loader worker sees them (a fresh process that keeps freed memory, as
    ``datamodules.streams.keep_freed_memory`` sets up every worker), plus
    ``targets_fresh_pages_ms_per_sample`` measured here, where each call's two 63 MB outputs fault in new
    4 KB pages (the difference is the kernel's page-fault cost, not the targets' work)."""
    worker = subprocess.run([sys.executable, "-m", "bench.targets", "--as-worker", str(repeats)],
                            capture_output=True, text=True, check=True)
    out = json.loads(worker.stdout.strip().splitlines()[-1])
    here = measure(repeats, mixed=False)
    return out | {"targets_fresh_pages_ms_per_sample": here["targets_ms_per_sample"]}


if __name__ == "__main__":
    if sys.argv[1:2] == ["--as-worker"]:
        keep_freed_memory()
        print(json.dumps(measure(int(sys.argv[2]))))
    else:
        print(json.dumps(run()))
