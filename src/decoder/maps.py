"""The decoder's view of the maps at the network input, full or lazy (``decoder.resize``).

The decoder reads the input-resolution maps (spec §7.2: bicubic upsampling of the stride-8 output, averaged
over scales) in three ways only: 3x3 and 7x7 windows around peaks (the climb to a strict maximum, the
centroid), PAF samples at single pixels along each candidate limb, and, for several scales, the stride-sampled
heatmaps its seeds start from. Both classes here serve those reads:

``FullMaps``: the upsampled tensor ``[C, H, W]`` (``Decoder.resize``), read by index.
``LazyMaps``: the coarse maps themselves; a value at input pixel (y, x) of channel c is computed when read,
``sum over scales of rows[y] @ coarse[c] @ cols[x] / n_scales`` with the rows of the same ``bicubic_matrix``
as the full resize (Keys a = -0.75, edges replicated, zero past ``floor(size * factor)``, NaN/inf as 0). A
row of that matrix has its (at most 4) non-zero weights within 4 consecutive coarse cells, so a window of
``a x b`` pixels needs one ``P x Q`` patch of coarse cells (``P = ceil((a - 1) / factor) + 4``) and two small
contractions, columns first as the full path multiplies. Equal to the full path to float rounding (the
products are summed in another order), at a few thousand patches per image instead of 540 MB of maps.
``LazyMaps.pair_bound`` is the cheap read beside it: an upper bound of a PAF pair's components at a pixel
from a table of 4x4 coarse maxima (one value gathered instead of 32), so that connection scoring can reject
a sample under its threshold without computing it.

Reads are torch on the maps' device (index arrays go there, values come back as float32 numpy); a CPU
tensor is read through numpy views, without copies.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

from src.core.geometry import cell_pixel, resize_source

CHUNK = 1 << 18
"""Coarse values gathered per step on the CPU (1 MB of float32)."""


@functools.cache
def bicubic_matrix(size: int, factor: float, out: int) -> torch.Tensor:
    """``[out, size]`` weights of ``F.interpolate(mode="bicubic", align_corners=False, scale_factor=factor)``
    along one axis (Keys' cubic, a = -0.75, edges replicated); rows past ``floor(size * factor)`` are zero.

    Upsampling as two matrix products gives the same values as ``F.interpolate`` (to float rounding) at a
    fraction of its CPU time: 439 maps 60x80 -> 480x640 take 0.67 s instead of 1.8 s on one thread here.
    """
    a = -0.75
    dst = torch.arange(out, dtype=torch.float64)
    src = resize_source(dst, factor)
    first = torch.floor(src)
    t = src - first
    near = lambda d: ((a + 2) * d - (a + 3)) * d * d + 1  # noqa: E731  |d| <= 1
    far = lambda d: ((a * d - 5 * a) * d + 8 * a) * d - 4 * a  # noqa: E731  1 < |d| < 2
    weights = torch.zeros(out, size, dtype=torch.float64)
    for j, w in enumerate((far(t + 1), near(t), near(1 - t), far(2 - t))):
        col = (first + j - 1).clamp(0, size - 1).long()
        weights.index_put_((dst.long(), col), w, accumulate=True)
    weights[int(size * factor):] = 0
    return weights.float()


@functools.cache
def first_taps(factor: float, out: int) -> np.ndarray:
    """``[out]`` the first of the 4 coarse cells each output pixel reads (before clamping to the map), by the
    formula of ``bicubic_matrix``."""
    src = resize_source(torch.arange(out, dtype=torch.float64), factor)
    return (torch.floor(src) - 1).long().numpy()


def _values(out: torch.Tensor | np.ndarray) -> np.ndarray:
    """Read values as float32 numpy on the host, NaN as 0."""
    out = out.cpu().numpy() if isinstance(out, torch.Tensor) else out
    out = out.astype(np.float32, copy=False)
    out[np.isnan(out)] = 0.0
    return out


class FullMaps:
    """The upsampled maps ``[C, H, W]`` (any device), read by gathers that return only the values."""

    def __init__(self, maps: torch.Tensor):
        self.maps = maps
        self.shape = tuple(maps.shape)

    def __getitem__(self, channels: slice) -> FullMaps:
        return FullMaps(self.maps[channels])

    def _gather(self, index: np.ndarray) -> np.ndarray:
        flat = self.maps.reshape(-1)
        if flat.device.type == "cpu":
            return _values(np.take(flat.numpy(), index))
        return _values(flat[torch.as_tensor(index, device=flat.device)])

    def take(self, c: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Values at channels ``c``, rows ``y``, columns ``x`` (integer arrays, broadcast together)."""
        _, h, w = self.shape
        return self._gather((c * h + y) * w + x)

    def grid(self, c: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
        """``[N, a, b]``: channel ``c[n]`` at rows ``ys[n] [a]`` x columns ``xs[n] [b]``, each non-decreasing
        and spanning at most a - 1 (b - 1) pixels (a window, clamped to the image)."""
        _, h, w = self.shape
        return self._gather((c[:, None, None] * h + ys[:, :, None]) * w + xs[:, None, :])

    def pair_bound(self, pair: np.ndarray, y: np.ndarray, x: np.ndarray) -> None:
        """No bound cheaper than the values themselves (see ``LazyMaps.pair_bound``)."""
        return None

    def sampled(self, stride: int) -> torch.Tensor:
        """The maps at every ``stride``-th pixel from ``cell_pixel(stride)`` (the coarse cells' centres)."""
        at = cell_pixel(stride)
        return self.maps[:, at::stride, at::stride]


def _runs(flat: np.ndarray, length: int) -> np.ndarray:
    """Every run of ``length`` consecutive float32 values of ``flat`` as one item (a view, no copy): a
    gather of such items copies a patch row at a time, several times faster than gathering its values."""
    return np.ndarray((flat.size - length + 1,), np.dtype((np.void, 4 * length)), flat, 0, (4,))


def _contract(patch, rw, cw):
    """``patch [N, k, P, Q]`` (coarse cells), row weights ``rw [N, a, P]``, column weights ``cw [N, b, Q]``
    -> ``[N, k, a, b]``, columns first as ``rows @ (maps @ cols.T)``. numpy or torch alike (a loop over the
    few taps: numpy sums short axes slowly)."""
    across = patch[:, :, :, None, 0] * cw[:, None, None, :, 0]                  # [N, k, P, b]
    for q in range(1, patch.shape[3]):
        across += patch[:, :, :, None, q] * cw[:, None, None, :, q]
    out = across[:, :, None, 0, :] * rw[:, None, :, 0, None]                   # [N, k, a, b]
    for p in range(1, patch.shape[2]):
        out += across[:, :, None, p, :] * rw[:, None, :, p, None]
    return out


class _Scale:
    """One scale's coarse maps ``[C, h, w]`` with its row and column weights to ``(H, W)``."""

    def __init__(self, coarse: torch.Tensor, factor: float, size: tuple[int, int]):
        coarse = coarse.detach()
        self.cpu = coarse.device.type == "cpu"
        if self.cpu and (coarse.dtype != torch.float32 or not coarse.is_contiguous()):
            coarse = coarse.float().contiguous()        # numpy reads float32 runs (a copy of the coarse maps)
        self.coarse, self.factor, self.size = coarse, factor, size
        self.rows = bicubic_matrix(coarse.shape[1], factor, size[0]).to(coarse.device)
        self.cols = bicubic_matrix(coarse.shape[2], factor, size[1]).to(coarse.device)
        self.first_row, self.first_col = first_taps(factor, size[0]), first_taps(factor, size[1])
        self._padded: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        self._pixel_weights: tuple[np.ndarray, np.ndarray] | None = None
        self._bounds: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}  # by first channel

    def pixel_weights(self) -> tuple[np.ndarray, np.ndarray]:
        """``[H, 4]``, ``[W, 4]``: the 4 weights of each output row (column) from its first patch cell on
        (built on first use, kept on this object)."""
        if self._pixel_weights is not None:
            return self._pixel_weights
        out = []
        for first, m in ((self.first_row, self.rows), (self.first_col, self.cols)):
            size = m.shape[1]
            start = np.clip(first, 0, size - 4)
            out.append(np.ascontiguousarray(np.take_along_axis(m.numpy(), start[:, None] + np.arange(4), 1)))
        self._pixel_weights = (out[0], out[1])
        return self._pixel_weights

    def patch_size(self, span: int) -> int:
        """Coarse cells read by ``span`` consecutive output pixels."""
        return math.ceil((span - 1) / self.factor) + 4

    def padded(self, p: int, q: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Coarse maps and weights with zero cells appended where a map is smaller than the patch (tiny maps
        only; the values there have zero weight)."""
        c, h, w = self.coarse.shape
        if h >= p and w >= q:
            return self.coarse, self.rows, self.cols
        if (p, q) not in self._padded:
            ph, pw = max(p - h, 0), max(q - w, 0)
            self._padded[(p, q)] = (torch.nn.functional.pad(self.coarse, (0, pw, 0, ph)),
                                    torch.nn.functional.pad(self.rows, (0, ph)),
                                    torch.nn.functional.pad(self.cols, (0, pw)))
        return self._padded[(p, q)]

    def grid(self, c: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray | torch.Tensor:
        """``[N, k, a, b]`` values of channels ``c [N, k]`` at rows ``ys [N, a]`` x columns ``xs [N, b]`` (see
        ``FullMaps.grid``): float32 numpy for CPU maps, a tensor on the maps' device otherwise."""
        p, q = self.patch_size(ys.shape[1]), self.patch_size(xs.shape[1])
        coarse, rows, cols = self.padded(p, q)
        h, w = coarse.shape[1:]
        r0 = np.clip(self.first_row[ys[:, 0]], 0, h - p)                       # [N] the patch's first row
        c0 = np.clip(self.first_col[xs[:, 0]], 0, w - q)                       # ... and column
        at = (((c * h + r0[:, None]) * w + c0[:, None])[:, :, None] + np.arange(0, p * w, w))  # [N, k, P]
        if self.cpu:
            def runs(t: torch.Tensor, index: np.ndarray, length: int) -> np.ndarray:
                out = _runs(t.numpy().reshape(-1), length)[index]
                return out.view(np.float32).reshape(*index.shape, length)

            if ys.shape[1] == 1 and xs.shape[1] == 1 and p == 4 and q == 4:   # single pixels: tabled weights
                rw, cw = self.pixel_weights()
                rw, cw = rw[ys[:, 0]][:, None], cw[xs[:, 0]][:, None]
            else:
                rw, cw = runs(rows, ys * h + r0[:, None], p), runs(cols, xs * w + c0[:, None], q)
            patch = runs(coarse, at, q)
        else:
            dev = coarse.device

            def runs(t: torch.Tensor, index: np.ndarray, length: int) -> torch.Tensor:
                index = torch.as_tensor(index, device=dev)[..., None] + torch.arange(length, device=dev)
                return t.reshape(-1)[index]

            rw, cw = runs(rows, ys * h + r0[:, None], p), runs(cols, xs * w + c0[:, None], q)
            patch = runs(coarse, at, q).float()
        out = _contract(patch, rw, cw)
        finite = np.isfinite(out) if self.cpu else torch.isfinite(out)
        if not finite.all():                  # NaN/inf cells count as 0 (as in resize): redo those windows
            bad = ~finite.reshape(len(out), -1).all(1)
            clean = patch[bad].copy() if self.cpu else patch[bad].clone()
            clean[~(np.isfinite(clean) if self.cpu else torch.isfinite(clean))] = 0
            out[bad] = _contract(clean, rw[bad], cw[bad])
        return out

    def pair_bound(self, start: int, pair: np.ndarray, y: np.ndarray, x: np.ndarray) -> torch.Tensor:
        """``[N]`` upper bounds of ``max(|v_c|, |v_c+1|)``, channels ``c = start + 2 pair``, at pixels (y, x):
        the absolute sums of the pixel's row and column weights times the largest |coarse value| of both
        channels in its 4x4 patch. The table of patch maxima is made once per ``start``."""
        if start not in self._bounds:
            coarse, rows, cols = self.padded(4, 4)
            n = (coarse.shape[0] - start) // 2
            # A NaN or infinite cell makes the bounds of its patches NaN or inf: nothing known there.
            m = coarse[start:start + 2 * n].float().abs().reshape(n, 2, *coarse.shape[1:])
            m = torch.maximum(m[:, 0], m[:, 1])                                  # [n, h, w]
            for axis in (1, 2):                                                  # maxima of 4 cells running
                for step in (1, 2):
                    size = m.shape[axis] - step
                    m = torch.maximum(m.narrow(axis, 0, size), m.narrow(axis, step, size))
            self._bounds[start] = (m.contiguous(), rows.abs().sum(1), cols.abs().sum(1))
        table, row_sum, col_sum = self._bounds[start]
        h, w = table.shape[1:]
        r0 = np.clip(self.first_row[y], 0, h - 1)
        c0 = np.clip(self.first_col[x], 0, w - 1)
        dev = table.device
        at = torch.as_tensor((pair * h + r0) * w + c0, device=dev)
        return (table.reshape(-1)[at] * row_sum[torch.as_tensor(y, device=dev)]
                * col_sum[torch.as_tensor(x, device=dev)])

    def sampled(self, channels: slice, stride: int) -> torch.Tensor:
        m = torch.nan_to_num(self.coarse[channels].float(), nan=0.0, posinf=0.0, neginf=0.0)
        at = cell_pixel(stride)
        rows, cols = self.rows[at::stride], self.cols[at::stride]
        return torch.matmul(rows, torch.matmul(m, cols.T))


class LazyMaps:
    """The maps of ``Decoder.resize`` without computing them: ``coarse`` maps ``[C, h, w]`` (one per scale,
    any device) upsampled by ``factors`` to ``size`` (H, W) and averaged, each value computed when read.
    ``maps[a:b]`` reads channels a to b only (no copy)."""

    def __init__(self, coarse: list[torch.Tensor], factors: list[float], size: tuple[int, int]):
        self.scales = [_Scale(m, float(f), (int(size[0]), int(size[1])))
                       for m, f in zip(coarse, factors, strict=True)]
        self.offset = 0
        self.shape = (coarse[0].shape[0], int(size[0]), int(size[1]))

    def __getitem__(self, channels: slice) -> LazyMaps:
        start, stop, step = channels.indices(self.shape[0])
        if step != 1:
            raise ValueError("LazyMaps: channel slices with a step are not supported")
        out = object.__new__(LazyMaps)
        out.scales, out.offset = self.scales, self.offset + start
        out.shape = (max(stop - start, 0), *self.shape[1:])
        return out

    def _grid(self, c: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray | torch.Tensor:
        """``[N, k, a, b]`` for channels ``c [N, k]`` (several channels of one window share its weights)."""
        if len(c) == 0:
            return np.zeros((0, c.shape[1], ys.shape[1], xs.shape[1]), np.float32)
        c = np.asarray(c, np.int64) + self.offset
        ys, xs = np.ascontiguousarray(ys, np.int64), np.ascontiguousarray(xs, np.int64)
        first = self.scales[0]
        if not first.cpu:
            return self._scales_sum(c, ys, xs)
        # On the CPU in chunks of about 1 MB of patches: the temporaries stay in the cache and are reused
        # (one pass over 15 000 PAF samples at once took 2-3x as long, mostly faulting in fresh pages).
        size = c.shape[1] * first.patch_size(ys.shape[1]) * first.patch_size(xs.shape[1])
        chunk = max(1, CHUNK // size)
        if len(c) <= chunk:
            return self._scales_sum(c, ys, xs)
        out = np.empty((len(c), c.shape[1], ys.shape[1], xs.shape[1]), np.float32)
        for i in range(0, len(c), chunk):
            out[i:i + chunk] = self._scales_sum(c[i:i + chunk], ys[i:i + chunk], xs[i:i + chunk])
        return out

    def _scales_sum(self, c: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray | torch.Tensor:
        out = None
        for s in self.scales:
            v = s.grid(c, ys, xs)
            out = v if out is None else out + v
        return out if len(self.scales) == 1 else out / len(self.scales)

    def grid(self, c: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
        """``[N, a, b]``: channel ``c[n]`` at rows ``ys[n] [a]`` x columns ``xs[n] [b]``, each non-decreasing
        and spanning at most a - 1 (b - 1) pixels (a window, clamped to the image)."""
        return _values(self._grid(np.asarray(c)[:, None], ys, xs)[:, 0])

    def take(self, c: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Values at channels ``c``, rows ``y``, columns ``x`` (integer arrays, broadcast together)."""
        c, y, x = np.asarray(c), np.asarray(y), np.asarray(x)
        if c.ndim == 2 and y.shape == x.shape == (len(c), 1):       # channels [N, k] at one pixel each
            return _values(self._grid(c, y, x)[:, :, 0, 0])
        c, y, x = np.broadcast_arrays(c, y, x)
        out = self._grid(c.reshape(-1, 1), y.reshape(-1, 1), x.reshape(-1, 1))
        return _values(out).reshape(c.shape)

    def pair_bound(self, pair: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        """``[N]`` upper bounds of ``max(|v_2p|, |v_2p+1|)``, the two channels of pair ``p`` at pixels (y, x),
        from a table of coarse maxima instead of the 32 weighted coarse values a read costs: where the maps
        are near zero (the PAFs away from every limb) a sample below a threshold is known without reading
        it. Averaged over scales as the values are."""
        pair, y, x = (np.asarray(a, np.int64) for a in (pair, y, x))
        out = sum(s.pair_bound(self.offset, pair, y, x) for s in self.scales) / len(self.scales)
        return np.nan_to_num(out.cpu().numpy(), nan=np.inf)                 # NaN: no bound

    def sampled(self, stride: int) -> torch.Tensor:
        """The maps at every ``stride``-th pixel from ``cell_pixel(stride)`` (the coarse cells' centres),
        as ``FullMaps.sampled`` reads them from the full maps: rows of the same matrices."""
        out = None
        for s in self.scales:
            v = s.sampled(slice(self.offset, self.offset + self.shape[0]), stride)
            out = v if out is None else out.add_(v)
        return out if len(self.scales) == 1 else out.div_(len(self.scales))


def as_maps(maps: torch.Tensor | FullMaps | LazyMaps) -> FullMaps | LazyMaps:
    """A tensor of full-resolution maps as ``FullMaps``; ``FullMaps`` and ``LazyMaps`` as they are."""
    return FullMaps(maps) if isinstance(maps, torch.Tensor) else maps
