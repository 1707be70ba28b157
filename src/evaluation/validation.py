"""Validation while training: decode each rank's images, gather the records once, score every part (the six
COCO-WholeBody parts for the BODY_135 family, ``Layout.parts`` for any other layout).

DDP rule (pipeline_recipes.md findings 7 and 9): ranks may see different numbers of val batches, so nothing
here runs a collective per batch; :meth:`ValidationCollector.evaluate` gathers the per-image records once to
rank 0 (``gather_object``), which keeps the first copy of each image id and scores every val image exactly
once; the metrics go back to every rank (``broadcast_object_list``) so all ranks log the same values.
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.distributed as dist

from src.core.skeleton import BODY_135, Layout
from src.decoder import draw
from src.decoder.decode import Person
from src.decoder.writers import records
from src.evaluation.evaluator import PART_FIELDS, evaluate

log = logging.getLogger(__name__)


class ValidationCollector:
    """Per-image COCO result records (of ``layout``) of one validation pass, the GT json of each val source
    (as the batches name it), and a few images to draw."""

    def __init__(self, num_images: int = 4, layout: Layout = BODY_135):
        self.num_images = num_images
        self.layout = layout
        self.reset()

    def reset(self) -> None:
        self.records: dict[str, dict[int, list[dict]]] = {}  # val source -> image id -> result records
        self.gts: dict[str, str] = {}  # val source -> its gt.json, in the order first seen
        self.labelled: dict[str, np.ndarray] = {}  # val source -> bool[K]: the points its samples label
        self.samples: list[tuple[np.ndarray, torch.Tensor, list[np.ndarray]]] = []

    def add(self, batch: dict, people: list[list[Person]], maps: torch.Tensor) -> None:
        """One validation batch: ``people`` per image in original-image pixels (``src.inference``), ``maps``
        ``[B, K + 2P, h, w]`` of the padded batch at one scale (drawn for the first images)."""
        for i, found in enumerate(people):
            image_id, source = int(batch["image_id"][i]), batch["source"][i]
            self.gts.setdefault(source, batch["gt"][i])
            mine = batch["labelled"][i].cpu().numpy().astype(bool)
            self.labelled[source] = self.labelled.get(source, np.zeros_like(mine)) | mine
            self.records.setdefault(source, {})[image_id] = records(found, image_id, self.layout)
            if len(self.samples) < self.num_images:
                ih, iw = (int(v) for v in batch["input_size"][i])
                image = draw.to_bgr_uint8(batch["image"][i])[:ih, :iw]
                scale = batch["scale"][i].double().cpu().numpy()
                offset = batch["offset"][i].double().cpu().numpy()
                drawn = [np.concatenate([p.keypoints[:, :2] * scale + offset, p.keypoints[:, 2:]], 1)
                         for p in found]
                self.samples.append((image, maps[i, :, : ih // 8, : iw // 8].cpu(), drawn))

    def evaluate(self) -> dict[str, tuple[dict, int, list[str]]]:
        """Gather every rank's records to rank 0 (one collective), keep one copy per image id, score each val
        source against its GT there, and broadcast the result. -> {source: (metrics, images scored, the parts
        the source labels)} on every rank, sources in the order rank 0, then rank 1 ... first saw them (the
        first one listed in ``data.val`` whenever rank 0 reads a shard of it)."""
        mine = (self.gts, self.records, self.labelled)
        if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return _score([mine], self.layout)
        rank = dist.get_rank()
        parts = [None] * dist.get_world_size() if rank == 0 else None
        dist.gather_object(mine, parts, dst=0)
        box = [_score(parts, self.layout) if rank == 0 else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def write_pictures(self, out_dir: Path, step: int, loggers: list) -> None:
        """Overlays and map montages of the first images: ``out_dir/step_N_{overlay,maps}.png``, wandb."""
        if not self.samples:
            return
        overlays = [draw.draw_people(img, people, layout=self.layout) for img, _, people in self.samples]
        montages = [draw.montage(img, maps, self.layout) for img, maps, _ in self.samples]
        out_dir.mkdir(parents=True, exist_ok=True)
        files = {"overlay": _stack(overlays, axis=1), "maps": _stack(montages, axis=0)}
        for name, picture in files.items():
            cv2.imwrite(str(out_dir / f"step_{step:07d}_{name}.png"), picture)
        for logger in loggers:
            if hasattr(logger, "log_image"):  # WandbLogger: RGB
                logger.log_image(key="val/pictures", images=[p[..., ::-1].copy() for p in files.values()],
                                 step=step, caption=list(files))


def _score(parts: list[tuple[dict, dict, dict]], layout: Layout) -> dict[str, tuple[dict, int, list[str]]]:
    """Merge the ranks' (gts, records, labelled points), first copy of each image id, and score each source
    on every part; the list names the parts the source labels that the layout predicts (a body-foot network
    is not scored on faces)."""
    gts: dict[str, str] = {}
    labelled: dict[str, np.ndarray] = {}
    for part_gts, _, part_labelled in parts:
        for source, gt in part_gts.items():
            gts.setdefault(source, gt)
            labelled[source] = labelled.get(source, part_labelled[source]) | part_labelled[source]
    out = {}
    for source, gt in gts.items():
        merged: dict[int, list[dict]] = {}
        for _, part, _ in parts:
            for image_id, recs in part.get(source, {}).items():
                merged.setdefault(image_id, recs)
        preds = [r for recs in merged.values() for r in recs]
        metrics = evaluate(gt, preds, layout)
        own = set(layout.parts)
        if len(layout.wholebody_parts) == len(BODY_135.wholebody_parts):  # all of them: whole-body, hands
            own |= {"wholebody", "hand"}
        out[source] = (metrics, len(merged),
                       [p for p in metrics if p in own and _labels(labelled[source], p, layout)])
    return out


def _labels(labelled: np.ndarray, part: str, layout: Layout = BODY_135) -> bool:
    """Whether a source labelling the points ``labelled`` labels ``part`` (every point of it). For the
    BODY_135 family (135-point batches): the COCO-WholeBody part's fields (``hand``: both hands); a face
    set, which also derives nose and eyes, is not a body set."""
    if not layout.wholebody_parts:
        return bool(labelled[list(layout.parts[part])].all())
    fields = PART_FIELDS.get(part, PART_FIELDS["lefthand"] + PART_FIELDS["righthand"])
    return all(labelled[list(BODY_135.wholebody_parts[f])].all() for f in fields)


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
