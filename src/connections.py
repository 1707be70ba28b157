"""PAF line integrals for every candidate pair of every one of the 152 pair types (spec §7.4).

A candidate A->B of pair type k is scored by sampling PAF k at ``n = clamp(round(sqrt(5 max(|dx|, |dy|))),
5, 25)`` points along the segment (at ``A + (i + 0.5)/n (B - A)``, rounded to the nearest pixel), taking the
dot product with unit(AB) and keeping the samples above ``inter_threshold``. The pair is accepted when more
than ``inter_min_above`` of the samples are kept (score = their mean); a very close pair
(``|AB| < sqrt(HW)/150``) gets ``peak_threshold + 1e-6``; anything else scores 0.

All pairs of all types are one flat batch. Most candidates join two different people and fail at once, so two
of the n samples are read first: a pair already missing more samples than the rule allows is settled there,
and only the rest read all of theirs. The result is the same as reading every sample.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

from src.peaks import Peaks, take
from src.skeleton import NUM_KEYPOINTS, PAIRS_A, PAIRS_B

MAX_SAMPLES = 25


@dataclass
class Connections:
    """Accepted candidate connections, best first: pair type ``k``, peak indices ``a``, ``b``, PAF
    ``score``."""

    k: np.ndarray
    a: np.ndarray
    b: np.ndarray
    score: np.ndarray


def candidate_pairs(peaks: Peaks) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every (pair type, peak of part A, peak of part B) combination as flat arrays ``k, a, b``."""
    counts = peaks.counts(NUM_KEYPOINTS)
    start = np.cumsum(counts) - counts
    n_a, n_b = counts[PAIRS_A], counts[PAIRS_B]
    size = n_a * n_b
    total = int(size.sum())
    k = np.repeat(np.arange(len(PAIRS_A)), size)
    j = np.arange(total) - np.repeat(np.cumsum(size) - size, size)
    a = start[PAIRS_A][k] + j // n_b[k]
    b = start[PAIRS_B][k] + j % n_b[k]
    return k, a, b


@functools.cache
def _needed(min_above: float) -> np.ndarray:
    """Per sample count n: the fewest kept samples with kept / n > min_above."""
    need = np.full(MAX_SAMPLES + 1, MAX_SAMPLES + 1)
    for n in range(1, MAX_SAMPLES + 1):
        need[n] = next((c for c in range(n + 1) if c / n > min_above), n + 1)
    return need


def _sample(flat: torch.Tensor, k: np.ndarray, ax, ay, dx, dy, ux, uy, t: np.ndarray, size: tuple[int, int]):
    """Dot products of PAF k with unit(AB) = (ux, uy) at fraction ``t`` of each segment (nearest pixel)."""
    h, w = size
    x = np.clip(np.floor(ax[:, None] + t * dx[:, None] + 0.5), 0, w - 1).astype(np.int64)
    y = np.clip(np.floor(ay[:, None] + t * dy[:, None] + 0.5), 0, h - 1).astype(np.int64)
    base = (2 * k[:, None] * h + y) * w + x
    return take(flat, base) * ux[:, None] + take(flat, base + h * w) * uy[:, None]


def score_connections(pafs: torch.Tensor, peaks: Peaks, peak_threshold: float = 0.05,
                      inter_threshold: float = 0.05, inter_min_above: float = 0.95) -> Connections:
    """Score all candidate pairs on ``pafs [304, H, W]`` (input resolution); keep those above 1e-6, sorted by
    score + 0.1 conf(A) + 0.1 conf(B), best first (the order of the greedy assembly, §7.5 step 1)."""
    h, w = pafs.shape[1:]
    k, a, b = candidate_pairs(peaks)
    ax, ay = peaks.x[a], peaks.y[a]
    dx, dy = peaks.x[b] - ax, peaks.y[b] - ay
    norm = np.sqrt(dx * dx + dy * dy)
    ux, uy = dx / np.maximum(norm, 1e-12), dy / np.maximum(norm, 1e-12)
    n = np.floor(np.sqrt(5 * np.maximum(np.abs(dx), np.abs(dy))) + 0.5)
    n = np.clip(n, 5, MAX_SAMPLES).astype(np.int64)
    need = _needed(inter_min_above)[n]
    flat = pafs.reshape(-1)

    # Two probe samples (indices n//3 and 2n//3) settle most candidates.
    probe_t = (np.stack([n // 3, (2 * n) // 3], 1) + 0.5) / n[:, None]
    probe = _sample(flat, k, ax, ay, dx, dy, ux, uy, probe_t, (h, w))
    misses = (~(probe > inter_threshold)).sum(1)
    idx = np.nonzero((misses <= n - need) & (norm > 1e-6))[0]

    score = np.zeros(len(k), np.float32)
    if len(idx):
        ni = n[idx]
        steps = np.arange(MAX_SAMPLES)
        dots = _sample(flat, k[idx], ax[idx], ay[idx], dx[idx], dy[idx], ux[idx], uy[idx],
                       (steps + 0.5) / ni[:, None], (h, w))
        kept = (dots > inter_threshold) & (steps < ni[:, None])
        count = kept.sum(1)
        total = np.where(kept, dots, 0).sum(1)
        score[idx] = np.where(count >= need[idx], total / np.maximum(count, 1), 0)
    close = (score == 0) & (norm > 1e-6) & (norm < np.sqrt(h * w) / 150)
    score[close] = peak_threshold + 1e-6

    keep = np.nonzero(score > 1e-6)[0]
    rank = score[keep] + 0.1 * peaks.score[a[keep]] + 0.1 * peaks.score[b[keep]]
    keep = keep[np.argsort(-rank, kind="stable")]
    return Connections(k[keep], a[keep], b[keep], score[keep])
