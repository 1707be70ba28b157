"""Validation while training: decode each rank's images, gather the records once, score the six parts.

DDP rule (pipeline_recipes.md findings 7 and 9): ranks may see different numbers of val batches, so nothing
here runs a collective per batch; :meth:`ValidationCollector.evaluate` gathers the per-image records once with
``all_gather_object`` and keeps the first copy of each image id, so every val image is scored exactly once.
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from hydra.utils import instantiate

from src.decoder import draw
from src.decoder.decode import Decoder, to_image_pixels
from src.decoder.writers import wholebody_records
from src.evaluation.evaluator import evaluate_wholebody

log = logging.getLogger(__name__)


class ValidationCollector:
    """Per-image COCO-WholeBody result records of one validation pass, plus a few images to draw."""

    def __init__(self, decoder: dict, num_images: int = 4):
        self.decoder = instantiate(decoder) if "_target_" in decoder else Decoder(**decoder)
        self.num_images = num_images
        self.reset()

    def reset(self) -> None:
        self.records: dict[str, dict[int, list[dict]]] = {}  # val source -> image id -> result records
        self.samples: list[tuple[np.ndarray, torch.Tensor, list[np.ndarray]]] = []

    def add(self, batch: dict, per_scale: list[torch.Tensor], scales: list[float]) -> None:
        """``per_scale``: the maps ``[B, 439, h, w]`` of the padded batch at each factor of ``scales``
        (:func:`multiscale_maps`; averaged by the decoder); records go back to original-image pixels."""
        height, width = batch["image"].shape[-2:]
        maps = per_scale[scales.index(1.0) if 1.0 in scales else 0]  # the one drawn
        for i in range(maps.shape[0]):
            people = self.decoder([m[i] for m in per_scale], (height, width), scales)
            scale = tuple(float(s) for s in batch["scale"][i])
            offset = tuple(float(o) for o in batch["offset"][i])
            image_id = int(batch["image_id"][i])
            per_source = self.records.setdefault(batch["source"][i], {})
            per_source[image_id] = wholebody_records(to_image_pixels(people, scale, offset), image_id)
            if len(self.samples) < self.num_images:
                ih, iw = (int(v) for v in batch["input_size"][i])
                image = draw.to_bgr_uint8(batch["image"][i])[:ih, :iw]
                self.samples.append((image, maps[i, :, : ih // 8, : iw // 8].cpu(),
                                     [p.keypoints for p in people]))

    def evaluate(self, gts: dict[str, str]) -> dict[str, tuple[dict, int]]:
        """Gather every rank's records (one collective), keep one copy per image id, score each val source
        against its GT. -> {source: (metrics, images scored)}."""
        parts = [self.records]
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            parts = [None] * dist.get_world_size()
            dist.all_gather_object(parts, self.records)
        out = {}
        for source, gt in gts.items():
            merged: dict[int, list[dict]] = {}
            for part in parts:
                for image_id, recs in part.get(source, {}).items():
                    merged.setdefault(image_id, recs)
            preds = [r for recs in merged.values() for r in recs]
            out[source] = (evaluate_wholebody(gt, preds), len(merged))
        return out

    def write_pictures(self, out_dir: Path, step: int, loggers: list) -> None:
        """Overlays and map montages of the first images: ``out_dir/step_N_{overlay,maps}.png``, wandb."""
        if not self.samples:
            return
        overlays = [draw.draw_people(img, people) for img, _, people in self.samples]
        montages = [draw.montage(img, maps) for img, maps, _ in self.samples]
        out_dir.mkdir(parents=True, exist_ok=True)
        files = {"overlay": _stack(overlays, axis=1), "maps": _stack(montages, axis=0)}
        for name, picture in files.items():
            cv2.imwrite(str(out_dir / f"step_{step:07d}_{name}.png"), picture)
        for logger in loggers:
            if hasattr(logger, "log_image"):  # WandbLogger: RGB
                logger.log_image(key="val/pictures", images=[p[..., ::-1].copy() for p in files.values()],
                                 step=step, caption=list(files))


def multiscale_maps(net, x: torch.Tensor, scales: list[float]) -> list[torch.Tensor]:
    """The 439-channel maps of the normalised batch ``x`` at each scale (image resized by ``s``, padded
    right/bottom to a multiple of 8, so coordinates are not shifted)."""
    out = []
    for s in scales:
        xs = x if s == 1 else F.interpolate(x, scale_factor=s, mode="bilinear", align_corners=False)
        h, w = xs.shape[-2:]
        xs = F.pad(xs, (0, -w % 8, 0, -h % 8))
        out.append(net.maps(net(xs)).float())
    return out


def _stack(pictures: list[np.ndarray], axis: int) -> np.ndarray:
    """Concatenate along ``axis`` after padding the other dimension to the largest."""
    other = 1 - axis
    size = max(p.shape[other] for p in pictures)
    padded = []
    for p in pictures:
        pad = [(0, 0), (0, 0), (0, 0)]
        pad[other] = (0, size - p.shape[other])
        padded.append(np.pad(p, pad))
    return np.concatenate(padded, axis)
