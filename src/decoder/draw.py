"""Pictures of predictions: skeleton overlays and heatmap/PAF montages (BGR uint8 images, cv2).

Used by validation (``src/evaluation/validation.py``) and prediction:
``draw_people(image, [kp, ...], threshold, layout)``. Skeletons are drawn as OpenPose renders them: the
layout's limbs (``Layout.limbs``; BODY_135's are anatomical: body, MPII, feet, each finger, the face contours,
not the 152 PAF pairs; a plain layout's are its pairs); body limbs each in their own hue, feet, the fingers of
each hand and the face in theirs; every limb blended with an opacity that follows the confidence of its
weaker end.
"""

from __future__ import annotations

import colorsys
import functools

import cv2
import numpy as np
import torch

from src.core.skeleton import BODY_135, Layout

MIN_ALPHA = 0.35
"""Opacity of a limb whose weaker end has confidence 0; confidence 1 draws it opaque."""


def _hues(n: int, start: float, span: float) -> list[tuple[int, int, int]]:
    """``n`` saturated BGR colours with hues spread over ``span`` of the wheel from ``start``."""
    out = []
    for i in range(n):
        r, g, b = colorsys.hsv_to_rgb((start + span * i / max(n, 1)) % 1.0, 0.9, 1.0)
        out.append((int(255 * b), int(255 * g), int(255 * r)))
    return out


def _limb_table(layout: Layout) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
    """(``[L, 2]`` point indices of every limb, a BGR colour per limb; parts without a palette of their own
    get hues spread over the wheel)."""
    pairs, colours = [], []
    palette = {"body": _hues(len(layout.limbs.get("body", ())), 0.0, 0.8),
               "mpii": [(170, 170, 170)] * len(layout.limbs.get("mpii", ())),
               "foot": _hues(len(layout.limbs.get("foot", ())), 0.45, 0.2),
               "face": [(255, 255, 255)] * len(layout.limbs.get("face", ()))}
    for side, start in (("lhand", 0.0), ("rhand", 0.5)):  # one hue per finger, each hand its half
        palette[side] = [c for c in _hues(5, start, 0.45) for _ in range(4)]
    for part, limbs in layout.limbs.items():
        for (a, b), colour in zip(limbs, palette.get(part) or _hues(len(limbs), 0.0, 0.85), strict=True):
            pairs.append((layout.index(a), layout.index(b)))
            colours.append(colour)
    return np.asarray(pairs, np.int64).reshape(-1, 2), colours


def _point_style(limbs: np.ndarray, colours: list, layout: Layout) -> tuple[list, np.ndarray]:
    """(BGR colour per point: the colour of the limb ending at it, the first limb's start taking that limb's;
    whether the point is drawn at half the radius: face and hand points)."""
    point_colours = np.zeros((layout.num_keypoints, 3), np.int64)
    if len(limbs):
        point_colours[limbs[:, 1]] = colours
        point_colours[limbs[0, 0]] = colours[0]
    small = np.zeros(layout.num_keypoints, bool)
    for group in ("lhand", "rhand", "face"):
        if group in layout.groups:
            small[layout.group_slice(group)] = True
    return [tuple(c) for c in point_colours.tolist()], small


@functools.cache
def style(layout: Layout) -> tuple[np.ndarray, list, list, np.ndarray]:
    """(limbs ``[L, 2]``, limb colours, point colours, small points) of a layout, made once per layout."""
    limbs, colours = _limb_table(layout)
    return (limbs, colours, *_point_style(limbs, colours, layout))


ALPHA_LEVELS = 8
"""Limb opacities are drawn at this many levels: one person's limbs at one level share a layer and a blend."""


def draw_people(image: np.ndarray, people: list[np.ndarray], threshold: float = 0.0,
                layout: Layout = BODY_135) -> np.ndarray:
    """Copy of ``image`` (BGR uint8) with each person's ``[K, 3]`` (x, y, confidence) of ``layout`` drawn.

    A point is drawn when its confidence is above ``threshold``; a limb when both its ends are, with opacity
    ``MIN_ALPHA + (1 - MIN_ALPHA) * min(confidences)`` (rounded to one of ``ALPHA_LEVELS``). Line width and
    point radius follow the image size.
    """
    limbs, limb_colours, point_bgr, small = style(layout)
    out = np.ascontiguousarray(image.copy())
    h, w = out.shape[:2]
    thick, radius = max(1, max(h, w) // 320), max(1, max(h, w) // 250)
    pad = thick + 2
    radii = np.where(small, max(1, radius // 2), radius).tolist()
    for kp in people:
        kp = np.asarray(kp, np.float32)
        seen = (kp[:, 2] > threshold) & np.isfinite(kp).all(1)
        pts = np.rint(np.clip(np.where(seen[:, None], kp[:, :2], 0), -4 * max(h, w), 5 * max(h, w)))
        pts = pts.astype(np.int64)
        ends = pts[limbs]                                                            # [L, 2 ends, xy]
        lo, hi = ends.min(1) - pad, ends.max(1) + pad + 1                            # [L, xy]
        drawn = seen[limbs].all(1) & (lo < [w, h]).all(1) & (hi > 0).all(1)
        conf = np.clip(kp[limbs, 2].min(1), 0, 1)
        level = np.rint(conf * (ALPHA_LEVELS - 1)).astype(np.int64)
        for lv in np.unique(level[drawn]).tolist():
            idx = np.nonzero(drawn & (level == lv))[0]
            x0, y0 = np.maximum(lo[idx].min(0), 0).tolist()
            x1, y1 = np.minimum(hi[idx].max(0), [w, h]).tolist()
            roi = out[y0:y1, x0:x1]
            layer = roi.copy()
            for i, ((ax, ay), (bx, by)) in zip(idx.tolist(), ends[idx].tolist(), strict=True):
                cv2.line(layer, (ax - x0, ay - y0), (bx - x0, by - y0), limb_colours[i], thick, cv2.LINE_AA)
            alpha = MIN_ALPHA + (1 - MIN_ALPHA) * lv / (ALPHA_LEVELS - 1)
            cv2.addWeighted(layer, alpha, roi, 1 - alpha, 0, dst=roi)
        for k, (x, y) in zip(np.nonzero(seen)[0].tolist(), pts[seen].tolist(), strict=True):
            cv2.circle(out, (x, y), radii[k], point_bgr[k], -1, cv2.LINE_AA)
    return out


def _heat(image: np.ndarray, values: np.ndarray, label: str) -> np.ndarray:
    """``values`` [h, w] in 0..1 upsampled over ``image`` as a colour map, with a label."""
    h, w = image.shape[:2]
    v = cv2.resize(np.clip(values, 0, 1).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    colour = cv2.applyColorMap((np.clip(v, 0, 1) * 255).astype(np.uint8), cv2.COLORMAP_JET)
    panel = cv2.addWeighted(image, 0.4, colour, 0.6, 0)
    cv2.putText(panel, label, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return panel


def montage(image: np.ndarray, maps: torch.Tensor | np.ndarray, layout: Layout = BODY_135) -> np.ndarray:
    """One row: the image, then per group of ``layout`` the max over its heatmaps, then the max PAF vector
    length.

    ``maps`` is ``[K + 2P, h, w]`` at the stride of ``image`` (prediction or target).
    """
    num_keypoints = layout.num_keypoints
    maps = maps.detach().float().cpu().numpy() if isinstance(maps, torch.Tensor) else np.asarray(maps)
    panels = [np.ascontiguousarray(image)]
    for name, idx in layout.groups.items():
        panels.append(_heat(image, maps[list(idx)].max(0), name))
    paf = maps[num_keypoints:].reshape(-1, 2, *maps.shape[1:])  # (P, 2, h, w)
    panels.append(_heat(image, np.sqrt((paf ** 2).sum(1)).max(0), "paf |v|"))
    return np.concatenate(panels, 1)


def to_bgr_uint8(image: torch.Tensor) -> np.ndarray:
    """A batch image ``[3, H, W]`` (uint8 BGR, or float ``x / 256 - 0.5``) -> ``[H, W, 3]`` uint8."""
    x = image.detach().cpu()
    if x.dtype != torch.uint8:
        x = ((x.float() + 0.5) * 256).clamp(0, 255).to(torch.uint8)
    return np.ascontiguousarray(x.permute(1, 2, 0).numpy())
