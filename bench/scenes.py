"""Synthetic crowds for the runtime benchmark: an image with n people and their BODY_135 keypoints.

The people are the synthetic world's figures (:mod:`sharding.synthetic_figure`: random poses, five-finger
hands, a 70-point face), one per cell of a grid that fills the image, over a plain noisy background. Only the
layout matters for timing: the decoder runs on ground-truth maps rendered from these keypoints, and the
cascade cuts its face and hand crops around them.
"""

from __future__ import annotations

import math

import numpy as np

from sharding.synthetic_figure import Canvas, draw, place, sample_pose
from src.core.skeleton import BODY_135

FILL = 0.8
"""A figure's height as a fraction of its cell's (sample_pose spans about -0.6 .. 0.5 of the height)."""


def crowd(n: int, size: tuple[int, int], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """An ``(H, W, 3)`` uint8 image with ``n`` upright people on a grid, and their keypoints ``[n, 135, 3]``
    (x, y, v=1: every point labelled) in image pixels."""
    height, width = size
    rng = np.random.default_rng(seed)
    cols = math.ceil(math.sqrt(n * width / height / 2))  # cells about twice as tall as wide
    rows = math.ceil(n / cols)
    cell_w, cell_h = width / cols, height / rows
    image = np.full((height, width, 3), 110, np.uint8)
    image += rng.integers(0, 30, (height, width, 1), dtype=np.uint8)
    canvas = Canvas(image)
    people = np.zeros((n, BODY_135.num_keypoints, 3), np.float32)
    for i in range(n):
        r, c = divmod(i, cols)
        kp, shapes = sample_pose(rng)
        tall = FILL * min(cell_h, 2 * cell_w)
        at = np.array([(c + 0.5) * cell_w, r * cell_h + 0.55 * cell_h])
        fig = place(rng, kp, shapes, tall, float(rng.normal(0, 0.1)), np.zeros(2), at)
        draw(canvas, fig, i, rng)
        people[i, :, :2] = fig.kp
        people[i, :, 2] = 1
    canvas.finish()
    return canvas.img, people
