"""The weighted multi-source whole-body datamodule (configured from ``conf/data/``).

Sources are ``{name: {urls, probability, policy}}`` (a list of ``{name, ...}`` works too). ``urls`` is a
webdataset brace pattern (local path, ``http(s)://`` or ``pipe:`` command, ``::`` joins several); when it is
null the shards are ``<root>/<name>/train/`` as listed by its ``manifest.json`` (else every ``*.tar`` there).
A source with probability 0 is left out of the mixture; probabilities are normalised over the rest. A source
with policy ``background`` also fills the augmentation padding (spec §4.3 step 7), even at probability 0.

``layout`` is the run's keypoint layout; the shards hold its points (``Layout.shard_layout``: BODY_135's for
a subset of it such as ``body_foot``). Checked in the constructor: mixing mode, policies, probabilities
(negative or all zero), crop. Checked in ``setup()`` (before any batch is read): every shard set exists,
unless ``on_missing: skip`` drops it, and a local shard set's manifest names the same layout (name and
content hash; a manifest without one was written for BODY_135).

Batches: see ``datamodules.samples`` (uint8 BGR images, normalised on the device). With ``targets_on:
worker`` the loader workers compute ``target``/``weight`` and send them packed (``packed_targets``, ~50x
smaller); with ``device`` the workers send none. Either way this datamodule's ``on_after_batch_transfer``
(Lightning calls it after moving the batch to the device) completes the batch there, so the LightningModule
only reads it. Every batch carries its ``skipped`` count; every val sample names its source's ``gt.json``
(``val_gt`` lists them all).
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping
from pathlib import Path

import lightning as L
import torch
import webdataset as wds

from datamodules.augment import POLICIES, SCALE_RANGES, Policy
from datamodules.packed_targets import unpack
from datamodules.streams import SourceSpec, TrainStream, ValStream, add_targets
from src.core.skeleton import BODY_135, Layout

MIX_MODES = ("per_sample", "per_batch")


def _as_dict(sources, what: str) -> dict[str, dict]:
    """``{name: cfg}`` from a mapping or a list of ``{name, ...}``."""
    if isinstance(sources, Mapping):
        return {str(k): dict(v or {}) for k, v in sources.items()}
    if isinstance(sources, (list, tuple)):
        out = {}
        for i, s in enumerate(sources):
            if "name" not in s:
                raise ValueError(f"data.{what}[{i}] has no 'name'")
            out[str(s["name"])] = {k: v for k, v in dict(s).items() if k != "name"}
        return out
    raise ValueError(f"data.{what} must map names to sources or list them, got {type(sources).__name__}")


def _is_local(url: str) -> bool:
    return not url.startswith("pipe:") and "://" not in url


def shard_urls(name: str, urls: str | None, root: str | Path, split: str
               ) -> tuple[list[str] | None, dict | None]:
    """(the expanded shard urls of one source split, or None when its local shards are missing; the split's
    ``manifest.json`` when it is read from ``root`` and has one)."""
    if urls:
        expanded = wds.shardlists.expand_urls(str(urls))
        return (None if any(_is_local(u) and not Path(u).is_file() for u in expanded) else expanded), None
    folder = Path(root) / name / split
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text()) if path.is_file() else None
    found = [folder / s["name"] for s in manifest["shards"]] if manifest else sorted(folder.glob("*.tar"))
    return ([str(p) for p in found] if found and all(p.is_file() for p in found) else None), manifest


class WholeBodyDataModule(L.LightningDataModule):
    """Train: infinite mixed sources, ``batches_per_epoch`` batches per rank per epoch. Val: finite shards,
    each image once across ranks. ``batch_size`` is per rank."""

    def __init__(self, sources, val=None, root: str = "data/shards", crop: int = 480, batch_size: int = 10,
                 batches_per_epoch: int = 1000, mix: str = "per_sample", scale_ranges: str = "intended",
                 photometric: float = 0.0, rotate: float = 45.0, flip: float = 0.5, shuffle_buffer: int = 100,
                 background_reuse: int = 4, num_workers: int = 4, pin_memory: bool = False,
                 val_batch_size: int = 1, val_num_workers: int = 1, val_size: int = 480,
                 val_fit: str = "height", targets=None, targets_on: str = "device", seed: int = 0,
                 on_missing: str = "error", layout="body135"):
        super().__init__()
        self.layout = Layout.of(layout)
        self.shard_layout = self.layout.shard_layout
        self.source_cfg = _as_dict(sources, "sources")
        self.val_cfg = _as_dict(val, "val") if val else {}
        for what, options, value in (("mix", MIX_MODES, mix),
                                     ("targets_on", ("worker", "device"), targets_on),
                                     ("scale_ranges", tuple(SCALE_RANGES), scale_ranges),
                                     ("val_fit", ("height", "longer"), val_fit),
                                     ("on_missing", ("error", "skip"), on_missing)):
            if value not in options:
                raise ValueError(f"data.{what} must be one of {list(options)}, got {value!r}")
        if crop % 8 or crop <= 0 or batch_size < 1 or batches_per_epoch < 1:
            raise ValueError(f"data.crop must be a positive multiple of 8, batch_size and batches_per_epoch "
                             f">= 1; got crop={crop}, batch_size={batch_size}, "
                             f"batches_per_epoch={batches_per_epoch}")
        for name, cfg in {**self.source_cfg, **self.val_cfg}.items():
            policy = cfg.get("policy")
            if policy not in POLICIES:
                raise ValueError(f"data source {name!r}: unknown policy {policy!r}; known: {list(POLICIES)}")
        for name, cfg in self.source_cfg.items():
            p = cfg.get("probability", 0)
            if not isinstance(p, (int, float)) or p < 0 or p != p:
                raise ValueError(f"data.sources.{name}.probability must be a number >= 0, got {p!r}")
        if sum(cfg.get("probability", 0) for cfg in self.source_cfg.values()) <= 0:
            raise ValueError(f"data.sources: all probabilities are zero ({list(self.source_cfg)})")
        if not 0 <= rotate <= 180:
            raise ValueError(f"data.rotate must be in [0, 180] degrees, got {rotate!r}")
        if not 0 <= flip <= 1:
            raise ValueError(f"data.flip must be a probability in [0, 1], got {flip!r}")
        if targets_on == "worker" and targets is None:
            raise ValueError("data.targets_on=worker needs data.targets (a src.targets.Targets)")
        self.root, self.crop, self.batch_size = root, crop, batch_size
        self.batches_per_epoch = batches_per_epoch
        self.mix, self.scale_ranges, self.photometric = mix, scale_ranges, photometric
        self.shuffle_buffer, self.background_reuse = shuffle_buffer, background_reuse
        self.rotate, self.flip = rotate, flip
        self.num_workers, self.pin_memory, self.val_num_workers = num_workers, pin_memory, val_num_workers
        self.val_batch_size, self.val_size, self.val_fit = val_batch_size, val_size, val_fit
        self.targets, self.targets_on, self.seed, self.on_missing = targets, targets_on, seed, on_missing
        self.train_sources: list[SourceSpec] | None = None
        self.padding: SourceSpec | None = None
        self.val_sources: list[SourceSpec] = []

    # -- resolution ----------------------------------------------------------------------------------------
    def _resolve(self, name: str, cfg: dict, split: str) -> list[str] | None:
        folder = Path(cfg.get("root") or self.root) / name / split
        urls, manifest = shard_urls(name, cfg.get("urls"), cfg.get("root") or self.root, split)
        if urls is not None and manifest is not None:
            self._check_layout(name, folder, manifest)
        if urls is None:
            where = cfg.get("urls") or folder
            group = "sources" if split == "train" else "val"
            msg = (f"data source {name!r} ({split}): no shards at {where} - build them (make shards), set "
                   f"data.{group}.{name}.urls, or set data.on_missing=skip")
            if self.on_missing == "error":
                raise FileNotFoundError(msg)
            warnings.warn(msg + "; skipped", stacklevel=2)
        return urls

    def _check_layout(self, name: str, folder: Path, manifest: dict) -> None:
        """Stop before the first step when a source's shards hold another layout than the run's."""
        recorded = manifest.get("layout") or {"name": BODY_135.name, "digest": BODY_135.digest}
        want = self.shard_layout
        if recorded.get("digest") != want.digest:
            raise ValueError(f"data source {name!r}: its shards ({folder}) hold layout "
                             f"{recorded.get('name')!r} ({recorded.get('digest')}), the run's layout is "
                             f"{want.name!r} ({want.digest}): set layout= to the shards' layout or rebuild "
                             f"them")

    def resolve(self) -> None:
        """Find every shard set and normalise the probabilities over the sources present."""
        found = {n: self._resolve(n, c, "train") for n, c in self.source_cfg.items()
                 if c.get("probability", 0) > 0 or c["policy"] == "background"}
        present = {n: u for n, u in found.items() if u is not None}
        total = sum(self.source_cfg[n].get("probability", 0) for n in present)
        if total <= 0:
            raise FileNotFoundError(f"data.sources: none of {list(self.source_cfg)} with probability > 0 has "
                                    f"shards under {self.root}")
        self.train_sources = [SourceSpec(n, tuple(u), self.source_cfg[n]["probability"] / total,
                                         self.source_cfg[n]["policy"])
                              for n, u in present.items() if self.source_cfg[n].get("probability", 0) > 0]
        bg = [n for n, u in present.items() if self.source_cfg[n]["policy"] == "background"]
        self.padding = SourceSpec(bg[0], tuple(present[bg[0]]), 0.0, "background") if bg else None
        self.val_sources = []
        for n, c in self.val_cfg.items():
            urls = self._resolve(n, c, "val")
            if urls is not None:
                gt = c.get("gt") or Path(c.get("root") or self.root) / n / "val" / "gt.json"
                self.val_sources.append(SourceSpec(n, tuple(urls), 1.0, c["policy"], str(gt)))

    @property
    def val_gt(self) -> dict[str, str]:
        """Validation source name -> its COCO-WholeBody ``gt.json`` path (for the evaluator)."""
        if self.train_sources is None:
            self.resolve()
        return {s.name: s.gt for s in self.val_sources}

    # -- Lightning hooks -----------------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        trainer = self.trainer
        if trainer is not None:
            # DataLoader workers do not see torch.distributed: webdataset reads these to split by node.
            os.environ["RANK"], os.environ["WORLD_SIZE"] = str(trainer.global_rank), str(trainer.world_size)
        if self.train_sources is None:
            self.resolve()

    def train_dataset(self, base_epoch: int = 0) -> TrainStream:
        if self.train_sources is None:
            self.resolve()
        targets = self.targets if self.targets_on == "worker" else None
        policies = {s.name: Policy.make(s.policy, self.scale_ranges, self.rotate, self.flip)
                    for s in self.train_sources}  # each source's augmentation, decided here once
        return TrainStream(self.train_sources, policies, self.padding, self.crop, self.batch_size, self.mix,
                           self.photometric, self.shuffle_buffer, self.background_reuse, self.seed, targets,
                           base_epoch, self.shard_layout)

    def train_dataloader(self):
        epoch = self.trainer.current_epoch if self.trainer is not None else 0
        return self._loader(self.train_dataset(epoch), self.num_workers).with_epoch(
            self.batches_per_epoch).with_length(self.batches_per_epoch, silent=True)

    def val_dataloader(self):
        if self.train_sources is None:
            self.resolve()
        if not self.val_sources:
            return []
        stream = ValStream(self.val_sources, self.val_size, self.val_fit, self.val_batch_size,
                           self.shard_layout)
        return self._loader(stream, self.val_num_workers, persistent=False)

    def _loader(self, dataset, workers: int, persistent: bool = True) -> wds.WebLoader:
        # Persistent workers keep each worker's epoch counter (fresh draws every epoch) and skip re-spawning.
        pin = self.pin_memory and torch.cuda.is_available()
        return wds.WebLoader(dataset, batch_size=None, num_workers=workers, pin_memory=pin,
                             persistent_workers=persistent and workers > 0,
                             prefetch_factor=2 if workers > 0 else None)

    def on_after_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        """Lightning's hook, called on the batch once it is on the training device: completes the batch
        contract with ``target``/``weight`` there, unpacked from the worker's ``packed_targets`` or computed
        with ``targets`` (``targets_on: device``)."""
        if "packed_targets" in batch:
            batch["target"], batch["weight"] = unpack(batch.pop("packed_targets"))
        with torch.no_grad():
            return add_targets(batch, self.targets)
