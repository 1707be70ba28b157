"""Pictures of predictions: skeleton overlays and heatmap/PAF montages (BGR uint8 images, cv2).

Used by validation (``src/evaluation/validation.py``) and prediction: ``draw_people(image, [kp135x3, ...])``.
Body, MPII, feet, left hand, right hand and face each have their own colour.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from src.skeleton import BODY_135

COLOURS = {"body": (0, 165, 255), "mpii": (160, 160, 160), "foot": (255, 128, 0), "lhand": (0, 220, 0),
           "rhand": (220, 0, 220), "face": (255, 255, 255)}  # BGR
_PAIR_COLOURS = [COLOURS[BODY_135.group_of(max(a, b))] for a, b in BODY_135.pairs]
_POINT_COLOURS = [COLOURS[BODY_135.group_of(k)] for k in range(BODY_135.num_keypoints)]


def draw_people(image: np.ndarray, people: list[np.ndarray], threshold: float = 0.0) -> np.ndarray:
    """Copy of ``image`` (BGR uint8) with each person's ``[135, 3]`` (x, y, confidence) drawn over it.

    A point is drawn when its confidence is above ``threshold``; a limb when both its ends are.
    Line width and point radius follow the image size.
    """
    out = np.ascontiguousarray(image.copy())
    size = max(out.shape[:2])
    thick, radius = max(1, size // 320), max(1, size // 200)
    for kp in people:
        kp = np.asarray(kp, np.float32)
        seen = kp[:, 2] > threshold
        for (a, b), colour in zip(BODY_135.pairs, _PAIR_COLOURS, strict=True):
            if seen[a] and seen[b]:
                cv2.line(out, _pt(kp[a]), _pt(kp[b]), colour, thick, cv2.LINE_AA)
        for k in np.nonzero(seen)[0]:
            cv2.circle(out, _pt(kp[k]), radius, _POINT_COLOURS[k], -1, cv2.LINE_AA)
    return out


def _pt(p: np.ndarray) -> tuple[int, int]:
    return int(round(float(p[0]))), int(round(float(p[1])))


def _heat(image: np.ndarray, values: np.ndarray, label: str) -> np.ndarray:
    """``values`` [h, w] in 0..1 upsampled over ``image`` as a colour map, with a label."""
    h, w = image.shape[:2]
    v = cv2.resize(np.clip(values, 0, 1).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    colour = cv2.applyColorMap((np.clip(v, 0, 1) * 255).astype(np.uint8), cv2.COLORMAP_JET)
    panel = cv2.addWeighted(image, 0.4, colour, 0.6, 0)
    cv2.putText(panel, label, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return panel


def montage(image: np.ndarray, maps: torch.Tensor | np.ndarray, num_keypoints: int = BODY_135.num_keypoints
            ) -> np.ndarray:
    """One row: the image, then per group the max over its heatmaps, then the max PAF vector length.

    ``maps`` is ``[439, h, w]`` at stride 8 of ``image`` (prediction or target).
    """
    maps = maps.detach().float().cpu().numpy() if isinstance(maps, torch.Tensor) else np.asarray(maps)
    panels = [np.ascontiguousarray(image)]
    for name, idx in BODY_135.groups.items():
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
