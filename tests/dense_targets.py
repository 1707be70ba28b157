"""Test-only reference for src.targets: spec §3 written literally, one point and one limb at a time over the
whole grid, in the spec's build order (base, absent channels, person boxes, Gaussians, the paper's background
boxes, PAFs with the released running average). Slow on purpose; the fast code must equal it."""

from __future__ import annotations

import math

import torch

from src.core.skeleton import BODY_135

LN100 = 4.6052


def _cpp_round(x: float) -> int:
    return int(math.copysign(math.floor(abs(x) + 0.5), x))


def _drawn(kp, labelled, k) -> bool:
    x, y, v = (float(t) for t in kp[k])
    return 0 <= v <= 1 and bool(labelled[k]) and abs(x) <= 1e6 and abs(y) <= 1e6


def _box_cells(kp, labelled, gy, gx, grow):
    """Cells (centres gy, gx) inside the person's labelled-keypoint box (sides >= half the other), grown."""
    pts = [(float(kp[k, 0]), float(kp[k, 1])) for k in range(135) if _drawn(kp, labelled, k)]
    if not pts:
        return None
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    cx, cy = (min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2
    bw, bh = max(xs) - min(xs), max(ys) - min(ys)
    bw, bh = max(bw, bh / 2), max(bh, bw / 2)
    in_x = (gx >= cx - bw * (0.5 + grow)) & (gx <= cx + bw * (0.5 + grow))
    in_y = (gy >= cy - bh * (0.5 + grow)) & (gy <= cy + bh * (0.5 + grow))
    return in_y[:, None] & in_x[None, :]


def dense_targets(keypoints, labelled, ignore, image_size, stride=8, mask_policy="paper",
                  small_weight=7.0 / 5.75, paf_width=1.0, paf_centre="aligned", roi_grow=0.3,
                  background_roi_grow=1.0):
    nb, npeople = keypoints.shape[:2]
    h, w = -(-image_size[0] // stride), -(-image_size[1] // stride)
    off = stride / 2 - 0.5
    gx = torch.arange(w, dtype=torch.float32) * stride + off
    gy = torch.arange(h, dtype=torch.float32) * stride + off
    target = torch.zeros(nb, 439, h, w)
    weight = torch.zeros(nb, 439, h, w)
    for b in range(nb):
        kps, lab = keypoints[b], labelled[b]
        base = 1 - torch.nan_to_num(ignore[b].float(), nan=1.0).clamp(0, 1)
        present = [bool(lab[k]) for k in range(135)]
        for ka, kb in BODY_135.pairs:
            present += [present[ka] and present[kb]] * 2
        background = mask_policy == "paper" and bool(lab[:17].all())
        for c in range(439):                                            # steps 1-2
            weight[b, c] = base if (present[c] or background) else 0
        for p in range(npeople):                                        # step 3
            box = _box_cells(kps[p], lab, gy, gx, roi_grow)
            if box is None:
                continue
            for k in range(135):
                if float(kps[p, k, 2]) in (3.0, 4.0):
                    weight[b, k][box] = 0
                    for j, (ka, kb) in enumerate(BODY_135.pairs):
                        if k in (ka, kb):
                            weight[b, 135 + 2 * j: 137 + 2 * j, box] = 0
        for p in range(npeople):                                        # step 4: Gaussians
            for k in range(135):
                if not _drawn(kps[p], lab, k):
                    continue
                x, y = kps[p, k, 0], kps[p, k, 1]
                sigma = float(BODY_135.sigmas[k])
                expo = ((gx - x) ** 2)[None, :] + ((gy - y) ** 2)[:, None]
                expo = expo / (2 * torch.tensor(sigma, dtype=torch.float32) ** 2)
                support = expo <= LN100
                merged = torch.maximum(target[b, k], torch.exp(-expo))
                target[b, k] = torch.where(support, merged, target[b, k])
                weight[b, k][support] = small_weight if sigma < max(BODY_135.sigmas) else 1.0
        if background:                                                  # the paper's person boxes x3
            for p in range(npeople):
                box = _box_cells(kps[p], lab, gy, gx, background_roi_grow)
                if box is not None:
                    for c in range(439):
                        if not present[c]:
                            weight[b, c][box] = 0
        shift = off if paf_centre == "aligned" else 0.0                 # PAFs
        cells_x = torch.arange(w, dtype=torch.float32)[None, :].expand(h, w)
        cells_y = torch.arange(h, dtype=torch.float32)[:, None].expand(h, w)
        for j, (ka, kb) in enumerate(BODY_135.pairs):
            count = torch.zeros(h, w)
            for p in range(npeople):
                if not (_drawn(kps[p], lab, ka) and _drawn(kps[p], lab, kb)):
                    continue
                a = (kps[p, ka, :2] - shift) / stride
                d = (kps[p, kb, :2] - shift) / stride - a
                length = d.norm()
                if not length > 0:
                    continue
                u = d / length
                lo = [max(_cpp_round(float(min(a[i], a[i] + d[i])) - paf_width), 0) for i in range(2)]
                end = [_cpp_round(float(max(a[i], a[i] + d[i])) + paf_width) for i in range(2)]
                hi = [min(end[i] + (paf_centre == "aligned"), (w, h)[i]) for i in range(2)]  # aligned: incl.
                in_box = (cells_x >= lo[0]) & (cells_x < hi[0]) & (cells_y >= lo[1]) & (cells_y < hi[1])
                dist = ((cells_x - a[0]) * u[1] - (cells_y - a[1]) * u[0]).abs()
                hit = in_box & (dist <= paf_width)
                for i in range(2):
                    ch = target[b, 135 + 2 * j + i]
                    target[b, 135 + 2 * j + i] = torch.where(hit, (ch * count + u[i]) / (count + 1), ch)
                    weight[b, 135 + 2 * j + i][hit] = 1.0
                count += hit.float()
    return target, weight
