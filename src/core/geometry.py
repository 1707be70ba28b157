"""Where a pixel is: the network's input normalisation, the output grid, and the resize rule, written once.

Every part of the pipeline that moves between image pixels, network-input pixels and output cells reads
these: the loader (crop, ignore mask, eval resize), the targets (where a cell is centred), the decoder
(upsampling and peak seeds), inference (padding, mapping back) and export (the metadata of the input).

- **Normalisation**: uint8 BGR -> ``pixel / 256 - 0.5`` (the released network's input).
- **Stride grid**: output cell ``g`` covers input pixels ``[s*g, s*g + s)`` and is centred at
  ``s*g + s/2 - 0.5`` (:func:`cell_centre`), pixel centres at integers. Inputs are padded right/bottom to a
  multiple of ``s`` (:func:`pad_to`), so padding never shifts a coordinate.
- **Half-pixel resize**: resizing by ``f`` (cv2.resize, ``F.interpolate(align_corners=False)``) sends
  destination pixel ``d`` to source ``(d + 0.5) / f - 0.5`` (:func:`resize_source`), i.e.
  ``d = f * x + (f - 1) / 2`` (:func:`half_pixel_offset`).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

STRIDE = 8
"""Input pixels per output cell of every network here (three 2x poolings of the VGG-19 front end, or the
strided stem); targets, decoder, loader and export read it."""

NORMALISATION = {"formula": "pixel / 256 - 0.5", "scale": 1 / 256, "offset": -0.5, "channel_order": "BGR",
                 "layout": "NCHW float32"}
"""The released network's input (what exported files record in their metadata)."""


def normalise(image: torch.Tensor) -> torch.Tensor:
    """uint8 BGR ``[..., 3, H, W]`` -> float ``image / 256 - 0.5`` (the released normalisation); a float
    image is taken as already normalised."""
    return image.float() * NORMALISATION["scale"] + NORMALISATION["offset"] if image.dtype == torch.uint8 \
        else image.float()


def cell_centre(stride: int) -> float:
    """Input-pixel position of output cell 0's centre (3.5 at stride 8); cell g: ``stride*g`` + this."""
    return stride / 2 - 0.5


def cell_pixel(stride: int) -> int:
    """The input pixel nearest cell 0's centre (ties up: 4 at stride 8), where a full-resolution map is
    sampled to read the grid back."""
    return stride // 2


def pad_to(size: int, stride: int) -> int:
    """Pixels added after ``size`` to reach a multiple of ``stride``."""
    return -size % stride


def resize_source(dst, factor: float):
    """Source position of destination pixel ``dst`` when resizing by ``factor`` (half-pixel centres)."""
    return (dst + 0.5) / factor - 0.5


def half_pixel_offset(factor):
    """``d = factor * x + half_pixel_offset(factor)``: the same rule as :func:`resize_source`, forwards."""
    return 0.5 * (factor - 1)


@dataclass
class Resized:
    """An image resized for the network: ``image`` (padded right/bottom to a multiple of the stride),
    ``scale`` and ``offset`` per axis (x, y) with ``orig = (input - offset) / scale``, ``input_size`` (h, w)
    before the padding."""

    image: np.ndarray
    scale: np.ndarray
    offset: np.ndarray
    input_size: tuple[int, int]


def resize_for_eval(image: np.ndarray, size: int, fit: str = "height", stride: int = STRIDE) -> Resized:
    """No augmentation: resize so the height (``fit='height'``, OpenPose's convention) or the longer side
    (``'longer'``) is ``size``, then pad right/bottom with black to a multiple of the stride."""
    if fit not in ("height", "longer"):
        raise ValueError(f"fit must be 'height' or 'longer', got {fit!r}")
    h, w = image.shape[:2]
    f = size / (h if fit == "height" else max(h, w))
    nh, nw = max(1, round(h * f)), max(1, round(w * f))
    scale = np.array([nw / w, nh / h], np.float32)
    img = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR)
    img = cv2.copyMakeBorder(img, 0, pad_to(nh, stride), 0, pad_to(nw, stride), cv2.BORDER_CONSTANT, value=0)
    return Resized(img, scale, half_pixel_offset(scale), (nh, nw))
