"""What a network costs: parameters, FLOPs at a given input size, and measured batch-1 latency.

Used by the ablation run records, ``match_runtime`` and the runtime benchmark, so every number in the docs
comes from the same counting. FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` on a copy of
the network on the ``meta`` device (nothing is computed); it counts 2 FLOPs per multiply-accumulate.
"""

from __future__ import annotations

import copy
import time

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def parameters_m(model: nn.Module) -> float:
    """Parameter count in millions."""
    return sum(p.numel() for p in model.parameters()) / 1e6


def gflops(model: nn.Module, size: tuple[int, int] = (480, 480)) -> float:
    """GFLOPs (2 per MAC) of one forward pass at batch 1 and ``size`` = (H, W)."""
    meta = copy.deepcopy(model).to("meta").eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        meta(torch.empty(1, 3, *size, device="meta"))
    return counter.get_total_flops() / 1e9


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn, device: torch.device | str = "cpu", warmup: int = 1, repeats: int = 3) -> float:
    """Best (minimum) wall time of ``fn()`` over ``repeats`` calls in milliseconds, after ``warmup`` untimed
    calls (CUDA synchronised). The minimum is the figure least disturbed by other work on a shared machine."""
    device = torch.device(device)
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append((time.perf_counter() - start) * 1e3)
    return min(times)


def latency_ms(model: nn.Module, size: tuple[int, int] = (480, 480), device: torch.device | str = "cpu",
               warmup: int = 1, repeats: int = 3) -> float:
    """Best batch-1 forward time in ms at ``size`` on ``device`` (fp32, inference mode)."""
    device = torch.device(device)
    was_training = model.training
    model.eval().to(device)
    x = torch.rand(1, 3, *size, device=device) - 0.5
    with torch.inference_mode():
        ms = time_call(lambda: model(x), device, warmup, repeats)
    model.train(was_training)
    return ms
