"""Keypoint candidates: 3x3 maxima of the input-resolution heatmaps, refined to sub-pixel (spec §7.3).

A dense 3x3 maximum over 135 maps at 480x640 reads 41 M values, several times the whole decoder's budget on a
CPU. A peak of a bicubically upsampled stride-8 map lies within about a cell of a maximum of the stride-8
samples, so the search starts there, batched over all parts:
(1) seeds: local maxima (against the 4 direct neighbours) above half the threshold of the stride-8 maps
(the network output itself, or the full map sampled every ``stride`` pixels); (2) every seed climbs the
full-resolution map, one step to its best 3x3 neighbour at a time, until it stands on a maximum (at most
``2 * stride`` steps); (3) the tops above the threshold are the peaks, duplicates removed. A test compares
this with the dense search on crowded scenes: a weaker maximum within about a cell of a stronger one of the
same part can share its seed and be missed (0.2% of the drawn points there), a resolution limit that
the stride-8 network shares.

Two deliberate departures from OpenPose's strict maximum with the border excluded: a maximum on the border
counts (bicubic upsampling replicates the edge, so a point within a few pixels of it peaks on the border pixel
and would be lost), and a tie is broken in raster order (a point exactly between two pixels, common with
half-pixel annotations, gives one peak instead of none).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from src.core.geometry import STRIDE, cell_centre
from src.decoder.maps import FullMaps, LazyMaps, as_maps


@dataclass
class Peaks:
    """All candidates, sorted by part then descending score: ``part``, ``x``, ``y`` (input px), ``score``."""

    part: np.ndarray
    x: np.ndarray
    y: np.ndarray
    score: np.ndarray

    def __len__(self) -> int:
        return len(self.part)

    def counts(self, num_parts: int) -> np.ndarray:
        """Candidates per part."""
        return np.bincount(self.part, minlength=num_parts)


def _seeds(coarse: torch.Tensor, threshold: float, max_peaks: int) -> np.ndarray:
    """``[N, 3]`` (part, y, x) seeds in grid units: the cells of the stride-sampled maps above half the
    threshold (a bicubic peak can rise above the samples around it) and >= their 4 direct neighbours (not the
    diagonal ones: a weaker peak a cell or so away from a stronger one keeps its seed more often), moved by
    a parabola through each row and column of 3 (so the climb starts a pixel or two from its top). At most
    ``max_peaks`` per part, the highest."""
    k, h, w = coarse.shape
    c = coarse.detach().float().cpu().contiguous().numpy().reshape(-1)
    idx = np.flatnonzero(c > threshold / 2)
    value = c[idx]
    row, gx = np.divmod(idx, w)
    part, gy = np.divmod(row, h)
    # The 4 neighbours (up, down, left, right; the cell itself outside the map). A NaN one does not count.
    near = [c[np.where(inside, idx + step, idx)]
            for inside, step in ((gy > 0, -w), (gy < h - 1, w), (gx > 0, -1), (gx < w - 1, 1))]
    keep = ~(value < near[0]) & ~(value < near[1]) & ~(value < near[2]) & ~(value < near[3])
    if np.bincount(part[keep], minlength=1).max() > max_peaks:  # a flat or noisy map: the best seeds only
        order = np.nonzero(keep)[0][np.lexsort((-value[keep], part[keep]))]
        keep = np.zeros_like(keep)
        keep[order[np.arange(len(order)) - np.searchsorted(part[order], part[order]) < max_peaks]] = True
    value, part, gy, gx = value[keep], part[keep], gy[keep], gx[keep]
    up, down, left, right = (np.nan_to_num(v[keep]) for v in near)

    def vertex(before: np.ndarray, after: np.ndarray) -> np.ndarray:
        """Offset of the top of the parabola through the two neighbours and the cell, within half a cell."""
        curve = before - 2 * value + after
        return np.where(curve < 0, 0.5 * (before - after) / np.minimum(curve, -1e-12), 0.0).clip(-0.5, 0.5)

    return np.stack([part, gy + vertex(up, down), gx + vertex(left, right)], 1)


_DY = np.array([-1, -1, -1, 0, 0, 0, 1, 1, 1])   # the 3x3 square in raster order, centre at 4
_DX = np.array([-1, 0, 1, -1, 0, 1, -1, 0, 1])
_AROUND = np.array([-1, 0, 1])


def _climb(heat: FullMaps | LazyMaps, part: np.ndarray, y: np.ndarray, x: np.ndarray, max_steps: int
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Move each (y, x) to its best 3x3 neighbour until none moves -> final y, x, the value there and whether
    it settled within ``max_steps``. A tie goes to the pixel first in raster order, so a settled pixel is
    above the 4 neighbours before it and >= the 4 after it (those inside the image)."""
    h, w = heat.shape[1:]
    y, x = y.copy(), x.copy()
    value = np.zeros(len(y), np.float32)
    moving = np.arange(len(y))
    for _ in range(max_steps + 1):
        ny, nx = y[moving, None] + _AROUND, x[moving, None] + _AROUND             # [M, 3] rows, columns
        v = heat.grid(part[moving], np.clip(ny, 0, h - 1), np.clip(nx, 0, w - 1))  # [M, 3, 3]
        v[(ny < 0) | (ny >= h)] = -np.inf
        v.transpose(0, 2, 1)[(nx < 0) | (nx >= w)] = -np.inf
        v = v.reshape(len(moving), 9)
        value[moving] = v[:, 4]
        best = v.argmax(1)
        step = best != 4
        moving, best = moving[step], best[step]
        if not len(moving):
            break
        y[moving] += _DY[best]
        x[moving] += _DX[best]
    settled = np.ones(len(y), bool)
    settled[moving] = False
    return y, x, value, settled


def _refine(heat: FullMaps | LazyMaps, part: np.ndarray, y: np.ndarray, x: np.ndarray, radius: int
            ) -> tuple[np.ndarray, np.ndarray]:
    """Score-weighted centroid over the ``(2r+1)^2`` square around each peak, clipped to the image."""
    h, w = heat.shape[1:]
    side = min(2 * radius + 1, w)
    ys = y[:, None] + np.arange(-radius, radius + 1)                          # [N, 2r+1] rows
    xs = np.clip(x - radius, 0, w - side)[:, None] + np.arange(side)          # [N, side] columns read
    vals = np.maximum(heat.grid(part, np.clip(ys, 0, h - 1), xs), 0)         # [N, rows, columns]
    vals[(ys < 0) | (ys >= h)] = 0                                           # rows outside the image
    vals.transpose(0, 2, 1)[np.abs(xs - x[:, None]) > radius] = 0            # columns read beyond the radius
    total = vals.sum((1, 2))
    # Row and column sums run along N (a copy with N last): numpy sums a short inner axis slowly. The same
    # values for the default 7x7 window; from 8 wide numpy sums a contiguous row pairwise (3e-5 px apart).
    by_row_col = np.ascontiguousarray(vals.transpose(1, 2, 0))
    x_sum = (by_row_col.sum(0) * xs.T).sum(0)
    y_sum = (by_row_col.sum(1) * ys.T).sum(0)
    return x_sum / total, y_sum / total


def find_peaks(heatmaps: torch.Tensor | FullMaps | LazyMaps, threshold: float = 0.05, max_peaks: int = 127,
               radius: int = 3, stride: int = STRIDE, coarse: torch.Tensor | None = None) -> Peaks:
    """Candidates of every part of ``heatmaps [K, H, W]`` (input resolution: a tensor, or ``FullMaps`` /
    ``LazyMaps`` that compute only the values read).

    A peak is a pixel above ``threshold`` greater than its 8 neighbours (those inside the image; strictly for
    the 4 before it in raster order, so that a point exactly between two pixels gives one peak, not none). Its
    position is the score-weighted centroid of the ``radius`` square around it; its score is the map value at
    the peak pixel. At most ``max_peaks`` per part, the highest kept. ``coarse [K, h, w]``: the same maps at
    ``stride`` (cell g centred near pixel ``stride * g + stride / 2``), sampled from ``heatmaps`` when None.
    """
    heat = as_maps(heatmaps)
    k, h, w = heat.shape
    if h < 1 or w < 1:
        return Peaks(np.zeros(0, np.int64), *np.zeros((3, 0), np.float32))
    if coarse is None:
        coarse = heat.sampled(stride)
    seeds = _seeds(coarse, threshold, max_peaks)
    part = seeds[:, 0].astype(np.int64)
    y = np.clip(np.rint(seeds[:, 1] * stride + cell_centre(stride)), 0, h - 1).astype(np.int64)
    x = np.clip(np.rint(seeds[:, 2] * stride + cell_centre(stride)), 0, w - 1).astype(np.int64)
    y, x, value, settled = _climb(heat, part, y, x, 2 * stride)
    strict = settled & (value > threshold)
    key, first = np.unique(((part * h + y) * w + x)[strict], return_index=True)
    part, y, x, score = key // (h * w), key // w % h, key % w, value[strict][first]
    # Sort by part, then by descending score; keep the first max_peaks of each part.
    order = np.lexsort((-score, part))
    part, y, x, score = part[order], y[order], x[order], score[order]
    rank = np.arange(len(part)) - np.searchsorted(part, part)
    keep = rank < max_peaks
    part, y, x, score = part[keep], y[keep], x[keep], score[keep]
    rx, ry = _refine(heat, part, y, x, radius)
    return Peaks(part, rx.astype(np.float32), ry.astype(np.float32), score.astype(np.float32))
