"""PAF line integrals for every candidate pair of every one of the 152 pair types (spec §7.4).

A candidate A->B of pair type k is scored by sampling PAF k at ``n = clamp(round(sqrt(5 max(|dx|, |dy|))),
5, 25)`` points along the segment (at ``A + (i + 0.5)/n (B - A)``, rounded to the nearest pixel), taking the
dot product with unit(AB) and keeping the samples above ``inter_threshold``. The pair is accepted when more
than ``inter_min_above`` of the samples are kept (score = their mean); a very close pair
(``|AB| < sqrt(HW)/150``) gets ``peak_threshold + 1e-6``; anything else scores 0.

All pairs of all types are one flat batch. Most candidates join two different people and fail, so they are
settled before all their samples are read: (1) with lazy maps, a sample is a certain miss where a cheap upper
bound of |PAF| (``LazyMaps.pair_bound``: coarse maxima around it) is below the threshold, checked at three
samples (a quarter, three quarters and half of the way), and a pair with more certain misses than the rule
allows is rejected unread (on the 10-person benchmark scene, 89% of them); (2) those three samples are read,
one after the other, each only for the pairs still alive; (3) the pairs still alive read their other samples.
(Up to n = 20 a single miss rejects; longer pairs may miss one.) The result is the same as reading every
sample.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

from src.core.skeleton import Layout
from src.decoder.maps import FullMaps, LazyMaps, as_maps
from src.decoder.peaks import Peaks

MAX_SAMPLES = 25


@dataclass
class Connections:
    """Accepted candidate connections, best first: pair type ``k``, peak indices ``a``, ``b``, PAF
    ``score``."""

    k: np.ndarray
    a: np.ndarray
    b: np.ndarray
    score: np.ndarray


def candidate_pairs(peaks: Peaks, layout: Layout) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every (pair type, peak of part A, peak of part B) combination as flat arrays ``k, a, b``."""
    counts = peaks.counts(layout.num_keypoints)
    start = np.cumsum(counts) - counts
    n_a, n_b = counts[layout.pairs_a], counts[layout.pairs_b]
    size = n_a * n_b
    total = int(size.sum())
    k = np.repeat(np.arange(layout.num_pairs), size)
    j = np.arange(total) - np.repeat(np.cumsum(size) - size, size)
    a = start[layout.pairs_a][k] + j // n_b[k]
    b = start[layout.pairs_b][k] + j % n_b[k]
    return k, a, b


@functools.cache
def _needed(min_above: float) -> np.ndarray:
    """Per sample count n: the fewest kept samples with kept / n > min_above."""
    need = np.full(MAX_SAMPLES + 1, MAX_SAMPLES + 1)
    for n in range(1, MAX_SAMPLES + 1):
        need[n] = next((c for c in range(n + 1) if c / n > min_above), n + 1)
    return need


def score_connections(pafs: torch.Tensor | FullMaps | LazyMaps, peaks: Peaks, layout: Layout,
                      peak_threshold: float = 0.05, inter_threshold: float = 0.05,
                      inter_min_above: float = 0.95) -> Connections:
    """Score all candidate pairs of ``layout`` on ``pafs [2P, H, W]`` (input resolution); keep those above
    1e-6, sorted by score + 0.1 conf(A) + 0.1 conf(B), best first (the order of the greedy assembly, §7.5
    step 1). ``pafs``: a tensor, or ``FullMaps`` / ``LazyMaps`` that compute only the values read."""
    pafs = as_maps(pafs)
    h, w = pafs.shape[1:]
    k, a, b = candidate_pairs(peaks, layout)
    ax, ay = peaks.x[a], peaks.y[a]
    dx, dy = peaks.x[b] - ax, peaks.y[b] - ay
    norm = np.sqrt(dx * dx + dy * dy)
    ux, uy = dx / np.maximum(norm, 1e-12), dy / np.maximum(norm, 1e-12)
    n = np.floor(np.sqrt(5 * np.maximum(np.abs(dx), np.abs(dy))) + 0.5)
    n = np.clip(n, 5, MAX_SAMPLES).astype(np.int64)
    need = _needed(inter_min_above)[n]
    inv_n = (1.0 / n).astype(np.float32)
    channel = 2 * k

    def pixel(i: np.ndarray, step: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Sample ``step`` of pairs ``i``: the nearest pixel, clamped to the image."""
        t = (step + np.float32(0.5)) * inv_n[i]
        x = np.clip(np.floor(ax[i] + t * dx[i] + np.float32(0.5)), 0, w - 1).astype(np.int64)
        y = np.clip(np.floor(ay[i] + t * dy[i] + np.float32(0.5)), 0, h - 1).astype(np.int64)
        return y, x

    def dots(i: np.ndarray, step: np.ndarray) -> np.ndarray:
        """PAF . unit(AB) at sample ``step`` of pairs ``i``."""
        y, x = pixel(i, step)
        v = pafs.take(channel[i][:, None] + np.arange(2), y[:, None], x[:, None])   # [N, 2]: x, y components
        return v[:, 0] * ux[i] + v[:, 1] * uy[i]

    probes = (n // 4, 3 * n // 4, n // 2)
    alive = np.nonzero(norm > 1e-6)[0]
    allowed = n - need                                              # misses a pair may have and pass
    # Certain misses, without reading: |PAF . u| <= max(|PAF_x|, |PAF_y|) (|ux| + |uy|), and lazy maps bound
    # that maximum from a table (PAFs are near zero away from limbs, where most candidates run).
    certain = np.zeros(len(alive), np.int64)
    for probe in probes:
        bound = pafs.pair_bound(k[alive], *pixel(alive, probe[alive]))
        if bound is None:
            break
        certain += bound * (np.abs(ux[alive]) + np.abs(uy[alive])) < inter_threshold * (1 - 1e-4)  # rounding
    alive = alive[certain <= allowed[alive]]
    # Then samples n/4, 3n/4 and n/2 are read, each only for the pairs the ones before left alive: a pair
    # missing more samples than the rule allows (one miss is already too many up to n = 20) is rejected
    # without reading the rest. The pairs still alive read their other samples.
    kept, total = np.zeros(len(k), np.int64), np.zeros(len(k), np.float64)
    misses = np.zeros(len(k), np.int64)

    def read(i: np.ndarray, step: np.ndarray) -> None:
        d = dots(i, step)
        above = d > inter_threshold
        kept[:] += np.bincount(i, above, len(k)).astype(np.int64)
        misses[:] += np.bincount(i, ~above, len(k)).astype(np.int64)
        total[:] += np.bincount(i, np.where(above, d, 0), len(k))

    for probe in probes:
        read(alive, probe[alive])
        alive = alive[misses[alive] <= allowed[alive]]
    rest = n[alive] - len(probes)
    pair = np.repeat(alive, rest)
    step = np.arange(len(pair)) - np.repeat(np.cumsum(rest) - rest, rest)
    for probe in (n // 4, n // 2, 3 * n // 4):                   # skip the probes' steps, lowest first
        step += step >= probe[pair]
    read(pair, step)
    score = np.zeros(len(k), np.float32)
    score[alive] = np.where(kept[alive] >= need[alive], total[alive] / np.maximum(kept[alive], 1), 0)
    close = (score == 0) & (norm > 1e-6) & (norm < np.sqrt(h * w) / 150)
    score[close] = peak_threshold + 1e-6

    keep = np.nonzero(score > 1e-6)[0]
    rank = score[keep] + 0.1 * peaks.score[a[keep]] + 0.1 * peaks.score[b[keep]]
    keep = keep[np.argsort(-rank, kind="stable")]
    return Connections(k[keep], a[keep], b[keep], score[keep])
