"""Ground truth for one batch: 135 confidence maps, 152 PAFs (304 channels) and the loss weight W (spec §3).

``Targets(...)(keypoints, labelled, ignore, image_size) -> (target, weight)``, both ``[B, 439, h, w]`` with
``h, w`` the stride-``s`` grid: heatmaps in channels 0..134, PAF k in 135+2k (x) and 136+2k (y).

The released C++ walks the whole grid per point; here only the cells that can be written are visited, all at
once for the batch: every drawn point gets a fixed window of cells covering its Gaussian support and every
drawn limb the cells of its grid box (a ragged list expanded with ``repeat_interleave``); the values are then
scattered with ``scatter_reduce(amax)`` (heatmaps) and ``index_add`` (PAF sums and the per-cell counters
that average overlapping limbs). W starts from the few distinct mask planes of the batch, copied out once.
Python loops over none of pixels, points, pairs or samples; the one loop is over people in chunks of 40 (one
turn for up to 40 people per image) when grouping channels by whose boxes mask them. The same code runs on
CPU (loader workers) and on the GPU (training step). ``tests/dense_targets.py`` holds the literal whole-grid
formulation the tests compare against.
"""

from __future__ import annotations

import math

import torch

from src.core.geometry import STRIDE, cell_centre
from src.core.skeleton import BODY_135, Layout

LN100 = 4.6052
"""The released truncation constant: a Gaussian is written where d^2 / 2 sigma^2 <= ln 100 (value >= 1%)."""
FAR = 1e6
"""Coordinates beyond this many input pixels are treated as missing points."""


class Targets:
    """The spec §3 target maker, configured from ``conf/targets/default.yaml``.

    stride:        input pixels per grid cell (8 as released; 4 to see what resolution limits).
    mask_policy:   ``paper`` (default): on samples whose source labels the whole body (COCO-like), the
                   channels the source lacks (face, hands, foot, MPII) train as background outside each
                   annotated person's 3x box (§3.4 step 4, the paper's fix for ghosting); ``released``: those
                   channels are masked over the whole image, as the released code does (§9.4).
    small_weight:  W inside hand/face Gaussian supports (released 7/5.75 ~ 1.217; 1.0 turns it off).
    paf_width:     half-width of a PAF in grid cells (perpendicular distance threshold; released 1).
    paf_centre:    ``aligned`` (default): PAF cell g is centred where heatmap cell g is (s*g + s/2 - 0.5 px)
                   and a limb's box includes both rounded ends, so the field is symmetric about the limb;
                   ``released``: cell g taken at s*g px with the released half-open box [round(min - w),
                   round(max + w)): read back at s*g + 3.5 like the heatmaps, the field sits ~1.5 px (up to
                   3.5) down-right of the limb (§9.6).
    roi_grow:      per-side growth of the person box that masks parts with visibility 3/4 (§3.4 step 3).
    background_roi_grow: per-side growth of the box inside which ``paper`` masks the absent channels.
    layout:        the keypoint layout (anything ``Layout.of`` reads: a Layout, its data, a name, a file); its
                   ``body`` group, where it has one, decides COCO-like. A subset layout (``body_foot``) takes
                   the batch's 135-point keypoints and draws its own points (``Layout.select``).

    A point is drawn when its code is 0/1, its channel is labelled by the source and its coordinates are
    finite (NaN, inf or beyond ``FAR`` px: not drawn); limbs need both ends drawn and A != B.
    """

    def __init__(self, stride: int = STRIDE, mask_policy: str = "paper", small_weight: float = 7.0 / 5.75,
                 paf_width: float = 1.0, paf_centre: str = "aligned", roi_grow: float = 0.3,
                 background_roi_grow: float = 1.0, layout: Layout | str = BODY_135):
        if mask_policy not in ("paper", "released"):
            raise ValueError(f"targets.mask_policy must be 'paper' or 'released', got {mask_policy!r}")
        if paf_centre not in ("aligned", "released"):
            raise ValueError(f"targets.paf_centre must be 'aligned' or 'released', got {paf_centre!r}")
        if stride < 1 or paf_width <= 0:
            raise ValueError(f"targets.stride must be >= 1 and paf_width > 0, got {stride}, {paf_width}")
        self.layout = Layout.of(layout)
        self.stride = int(stride)
        self.mask_policy = mask_policy
        self.small_weight = float(small_weight)
        self.paf_width = float(paf_width)
        self.paf_centre = paf_centre
        self.roi_grow = float(roi_grow)
        self.background_roi_grow = float(background_roi_grow)
        self.offset = cell_centre(self.stride)
        """Input-pixel position of heatmap cell 0's centre (3.5 at stride 8)."""

    def grid_size(self, image_size: tuple[int, int]) -> tuple[int, int]:
        """The label grid of an ``(H, W)`` input: ceil(H / s) x ceil(W / s)."""
        return -(-int(image_size[0]) // self.stride), -(-int(image_size[1]) // self.stride)

    def __call__(self, keypoints: torch.Tensor, labelled: torch.Tensor, ignore: torch.Tensor | None,
                 image_size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """keypoints ``[B, P, 135, 3]`` (input px, codes 0..4), labelled ``bool[B, 135]``, ignore
        ``[B, h, w]`` (fraction of each cell ignored; None = nothing) -> (target, weight), each
        ``[B, 439, h, w]`` float32."""
        keypoints = torch.as_tensor(keypoints, dtype=torch.float32)
        keypoints, labelled = self.layout.select(keypoints, torch.as_tensor(labelled))
        device = keypoints.device
        k = self.layout.num_keypoints
        if keypoints.dim() != 4 or keypoints.shape[2:] != (k, 3):
            raise ValueError(f"targets: keypoints must be [B, P, {k}, 3], got {tuple(keypoints.shape)}")
        nb = keypoints.shape[0]
        labelled = torch.as_tensor(labelled, device=device).bool()
        if labelled.shape != (nb, k):
            raise ValueError(f"targets: labelled must be [{nb}, {k}], got {tuple(labelled.shape)}")
        h, w = self.grid_size(image_size)
        if ignore is None:
            ignore = torch.zeros(nb, h, w, device=device)
        ignore = torch.as_tensor(ignore, device=device).float()
        if ignore.shape != (nb, h, w):
            raise ValueError(f"targets: ignore must be [{nb}, {h}, {w}] for image_size {tuple(image_size)} "
                             f"at stride {self.stride}, got {tuple(ignore.shape)}")
        base = 1.0 - torch.nan_to_num(ignore, nan=1.0).clamp(0.0, 1.0)

        xy = keypoints[..., :2]
        draw = draw_mask(keypoints, labelled)
        weight = self._base_weight(base, keypoints, labelled, draw)
        target = torch.zeros_like(weight)
        self._heatmaps(xy, draw, target.view(-1), weight.view(-1), h, w)
        self._pafs(xy, draw, target.view(-1), weight.view(-1), h, w)
        return target, weight

    # -- W before the Gaussians and PAFs override it: §3.4 steps 1-3 and the paper's step 4 ----------------
    def _base_weight(self, base, keypoints, labelled, draw):
        """Each channel's plane is the base mask (1 - ignore), zeros (a channel the source lacks) or, on
        ``background`` samples, the base mask outside every annotated person's big box; then zeroed inside the
        small box of each person whose part behind the channel has visibility 3/4. Channels that share all of
        this share a plane: the few distinct planes are built once and copied out by one index_select."""
        nb, npeople, (h, w), device = len(base), keypoints.shape[1], base.shape[-2:], base.device
        pa, pb = (torch.as_tensor(x, device=device) for x in (self.layout.pairs_a, self.layout.pairs_b))
        present = torch.cat([labelled, (labelled[:, pa] & labelled[:, pb]).repeat_interleave(2, dim=1)], 1)
        body = self.layout.groups.get("body")  # a plain layout's samples label all of it: nothing to mask
        coco_like = labelled[:, body.start:body.stop].all(dim=1) if body else torch.zeros_like(labelled[:, 0])
        background = coco_like & (self.mask_policy == "paper")
        outside = base
        if background.any():
            outside = base * ~self._person_cells(keypoints, draw, (h, w), self.background_roi_grow).any(dim=1)
        sources = torch.stack([torch.zeros_like(base), base, outside], dim=1)     # [B, 3, h, w]
        source = torch.where(present, 1, torch.where(background[:, None], 2, 0))    # [B, 439]
        v = keypoints[..., 2]
        hidden = (v == 3) | (v == 4)
        hidden = torch.cat([hidden, (hidden[..., pa] | hidden[..., pb]).repeat_interleave(2, dim=-1)], -1)
        hidden &= draw.any(dim=-1)[..., None] & (source > 0)[:, None]              # [B, P, 439]
        plane_of = (torch.arange(nb, device=device)[:, None] * 3 + source).view(-1)   # [B*439]
        hidden = hidden.transpose(1, 2).reshape(nb * self.layout.num_channels, npeople)
        for chunk in hidden.split(40, dim=1):                     # + whose boxes mask it, 40 people at a time
            code = (chunk.long() << torch.arange(chunk.shape[1], device=device)).sum(dim=1)
            plane_of = torch.unique(plane_of * 2**40 + code, return_inverse=True)[1]
        first = torch.zeros(int(plane_of.max()) + 1 if nb else 0, dtype=torch.long, device=device)
        first.scatter_(0, plane_of, torch.arange(len(plane_of), device=device))    # a channel of each plane
        sample = first // self.layout.num_channels
        planes = sources.view(nb * 3, h * w).index_select(0, sample * 3 + source.view(-1)[first])
        masked_by = hidden[first]                                                   # [planes, P]
        if masked_by.any():
            small = self._person_cells(keypoints, draw, (h, w), self.roi_grow).view(nb * npeople, h * w)
            persons = torch.zeros(len(first), nb, npeople, device=device)
            persons[torch.arange(len(first), device=device), sample] = masked_by.float()
            planes = planes * (persons.view(len(first), -1) @ small.float() == 0)
        return planes.index_select(0, plane_of).view(nb, self.layout.num_channels, h, w)

    def _person_cells(self, keypoints, draw, grid, grow):
        """bool[B, P, h, w]: cells whose centre lies in each person's labelled-keypoint box, each side forced
        to at least half the other, grown by ``grow`` x its size on every side."""
        xy = keypoints[..., :2]
        inf = torch.tensor(float("inf"), device=xy.device)
        lo = torch.where(draw[..., None], xy, inf).amin(dim=2)                      # [B, P, 2]
        hi = torch.where(draw[..., None], xy, -inf).amax(dim=2)
        centre, size = (lo + hi) / 2, (hi - lo).nan_to_num(0.0, 0.0, 0.0)
        size = torch.maximum(size, size.flip(-1) / 2)
        lo, hi = centre - size * (0.5 + grow), centre + size * (0.5 + grow)
        rows = [torch.arange(n, device=xy.device) * self.stride + self.offset for n in grid]   # y then x
        in_y = (rows[0] >= lo[..., 1, None]) & (rows[0] <= hi[..., 1, None])
        in_x = (rows[1] >= lo[..., 0, None]) & (rows[1] <= hi[..., 0, None])
        return in_y[..., :, None] & in_x[..., None, :]

    # -- §3.2 heatmaps -------------------------------------------------------------------------------------
    def _heatmaps(self, xy, draw, target_flat, weight_flat, h, w):
        """Gaussians in a fixed window of cells around each drawn point, max-merged by scatter; their support
        overrides W."""
        s, off, device = self.stride, self.offset, xy.device
        b, p, k = draw.nonzero(as_tuple=True)
        if len(k) == 0:
            return
        sigma = torch.as_tensor(self.layout.sigmas, dtype=torch.float32, device=device)
        radius = sigma * (math.sqrt(2 * LN100) * (1 + 1e-4))                          # a hair wide: rounding
        size = int(2 * float(radius.max()) / s) + 1                                  # cells a support spans
        pt = xy[b, p, k]                                                            # [N, 2]
        first = torch.ceil((pt - radius[k, None] - off) / s)                        # [N, 2] first cell
        cells = first[:, :, None] + torch.arange(size, device=device, dtype=torch.float32)   # [N, 2, size]
        d2 = (cells * s + off - pt[:, :, None]) ** 2
        inside = (cells >= 0) & (cells < torch.tensor([w, h], device=device)[None, :, None])
        d2 = torch.where(inside, d2, torch.inf)                                     # off the grid: no support
        expo = ((d2[:, 0, None, :] + d2[:, 1, :, None]) / (2 * sigma[k, None, None] ** 2)).view(-1)
        sel = (expo <= LN100).nonzero().squeeze(1)                                  # [M] support cells
        point = torch.div(sel, size * size, rounding_mode="floor")
        channels = self.layout.num_channels
        corner = ((b * channels + k) * h + first[:, 1].long()) * w + first[:, 0].long()   # window origin
        steps = torch.arange(size, device=device)
        offsets = (steps[:, None] * w + steps).view(-1)                            # window cell -> offset
        idx = corner.index_select(0, point) + offsets.index_select(0, sel - point * (size * size))
        target_flat.scatter_reduce_(0, idx, torch.exp(-expo.index_select(0, sel)), reduce="amax")
        support_w = torch.where(sigma < sigma.max(), self.small_weight, 1.0)[k]
        weight_flat.scatter_(0, idx, support_w.index_select(0, point))

    # -- §3.3 PAFs -----------------------------------------------------------------------------------------
    def _pafs(self, xy, draw, target_flat, weight_flat, h, w):
        """Unit vectors on the cells of each limb's grid box near its line; same-type overlaps averaged.

        The boxes (a ragged list of cells) are flattened with ``repeat_interleave``; the per-cell counter of
        overlapping limbs lives in W's PAF x channel until W is set to 1 there."""
        s, thr, device = self.stride, self.paf_width, xy.device
        pa, pb = (torch.as_tensor(x, device=device) for x in (self.layout.pairs_a, self.layout.pairs_b))
        shift = self.offset if self.paf_centre == "aligned" else 0.0
        a = (xy[:, :, pa] - shift) / s                                          # [B, P, 152, 2] grid units
        d = (xy[:, :, pb] - shift) / s - a
        length = d.norm(dim=-1)
        ok = draw[:, :, pa] & draw[:, :, pb] & (length > 0)
        b, p, k = ok.nonzero(as_tuple=True)
        if len(k) == 0:
            return
        a, d, length = a[b, p, k], d[b, p, k], length[b, p, k]
        u = d / length[:, None]                                                     # [S, 2] unit A->B
        limit = torch.tensor([w, h], device=device, dtype=torch.float32)
        lo = torch.minimum(torch.floor(torch.minimum(a, a + d) - thr + 0.5).clamp(min=0), limit)
        inclusive = self.paf_centre == "aligned"                                # released: end excluded
        hi = torch.floor(torch.maximum(a, a + d) + thr + 0.5) + inclusive
        span = (torch.maximum(torch.minimum(hi, limit), lo) - lo).long()            # [S, 2] box size
        count = span[:, 0] * span[:, 1]
        total = int(count.sum())
        if total == 0:
            return
        plane = h * w
        first_paf = b * self.layout.num_channels + self.layout.num_keypoints
        corner = (first_paf + 2 * k) * plane + lo[:, 1].long() * w + lo[:, 0].long()
        ints = torch.stack([span[:, 0], torch.cumsum(count, 0) - count, corner])     # [3, S]
        floats = torch.cat([lo, a, u], 1).T.contiguous()                              # [6, S]
        seg = torch.repeat_interleave(torch.arange(len(k), device=device), count, output_size=total)
        width, start, corner = ints.index_select(1, seg)                              # per cell of every box
        lo_x, lo_y, a_x, a_y, u_x, u_y = floats.index_select(1, seg)
        local = torch.arange(total, device=device) - start
        row = torch.div(local, width, rounding_mode="floor")
        col = local - row * width
        rel_x = lo_x + col.float() - a_x                                              # cell - A, grid units
        rel_y = lo_y + row.float() - a_y
        hit = ((rel_x * u_y - rel_y * u_x).abs() <= thr).nonzero().squeeze(1)
        xidx = (corner + row * w + col).index_select(0, hit)
        ux, uy = u_x.index_select(0, hit), u_y.index_select(0, hit)
        weight_flat.index_fill_(0, xidx, 0.0)                                        # W's x channel counts
        weight_flat.index_add_(0, xidx, torch.ones_like(ux))
        share = 1.0 / weight_flat.index_select(0, xidx)
        target_flat.index_add_(0, xidx, ux * share)
        target_flat.index_add_(0, xidx + plane, uy * share)
        weight_flat.index_fill_(0, xidx, 1.0)
        weight_flat.index_fill_(0, xidx + plane, 1.0)


def draw_mask(keypoints: torch.Tensor, labelled: torch.Tensor) -> torch.Tensor:
    """bool[B, P, 135]: points that get a Gaussian (and their limbs a PAF): visibility 0/1, a channel the
    source labels, finite coordinates within ``FAR`` px (anything else is bad input and is not drawn)."""
    v = keypoints[..., 2]
    xy_ok = (keypoints[..., :2].abs() <= FAR).all(dim=-1)                           # False for NaN and inf
    return (v >= 0) & (v <= 1) & xy_ok & labelled[:, None, :]

