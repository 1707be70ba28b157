"""The iterable datasets behind the loaders: augmented, mixed, batched training batches; eval-resized
validation batches. Batching happens here (``partial=False`` for training) so people padding is per batch.

Every DataLoader worker builds its own streams in ``__iter__`` from (rank, worker, epoch), with rank and
world size read the way webdataset does (``RANK``/``WORLD_SIZE``, exported by the datamodule's ``setup``).
``epoch`` counts this object's iterations plus ``base_epoch``, so persistent workers draw new samples each
epoch and a resumed run does not replay epoch 0.
"""

from __future__ import annotations

import ctypes
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import webdataset as wds
from torch.utils.data import IterableDataset, get_worker_info

from datamodules.augment import Augment, Policy, background_canvas, background_patch, eval_sample
from datamodules.mixing import Counter, make_seed, mix_per_batch, mix_per_sample, raw_stream
from datamodules.packed_targets import pack
from datamodules.samples import BadSample, collate, collate_eval, decode, labelled_of
from src.core.skeleton import BODY_135, Layout

# What a malformed sample can raise on its way through decode and augmentation: skipped and counted.
DATA_ERRORS = (BadSample, ValueError, KeyError, TypeError, IndexError, cv2.error)


@dataclass(frozen=True)
class SourceSpec:
    """One resolved source: expanded shard urls, normalised probability, augmentation policy name."""

    name: str
    urls: tuple[str, ...]
    probability: float
    policy: str
    gt: str | None = None


def worker_position() -> tuple[int, int, int, int]:
    """(rank, world, worker, num_workers) of the calling process."""
    rank, world, _, _ = wds.utils.pytorch_worker_info()
    info = get_worker_info()
    return rank, world, (info.id if info else 0), (info.num_workers if info else 1)


def add_targets(batch: dict, targets) -> dict:
    """Given a ``src.targets.Targets``, add ``target`` and ``weight`` ``[B, C, S/8, S/8]`` computed where
    the batch is (on the device; the loader workers send theirs as ``packed_targets``)."""
    if targets is not None and "target" not in batch:
        size = tuple(batch["image"].shape[-2:])
        batch["target"], batch["weight"] = targets(batch["keypoints"], batch["labelled"], batch["ignore"],
                                                   size)
    return batch


def keep_freed_memory() -> None:
    """Let glibc reuse freed large blocks instead of returning them to the OS. A batch of targets is two
    ~60 MB tensors, above glibc's largest mmap threshold, so without this every batch page-faults 120 MB of
    fresh memory: measured here, that was 85% of the targets' cost in a worker (9.4 -> 1.4 ms per sample).
    The price is a worker RSS that stays at its peak. No-op where there is no glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 1 << 30)  # M_MMAP_THRESHOLD: blocks below 1 GiB come from the heap
        libc.mallopt(-1, 1 << 31)  # M_TRIM_THRESHOLD: keep up to 2 GiB of freed heap
    except (OSError, AttributeError):
        pass


class Backgrounds:
    """Padding patches from the background source: each decoded image serves ``reuse`` crops (spec §4.3
    step 7 draws a fresh crop and flip each time), since decoding dominates the loader's cost."""

    def __init__(self, raw: Iterator[dict], size: int, reuse: int, seed: int, counter: Counter, name: str):
        self.raw, self.size, self.reuse, self.counter, self.name = raw, size, max(1, reuse), counter, name
        self.rng = random.Random(seed)
        self.image, self.left = None, 0

    def next(self) -> np.ndarray:
        streak = 0
        while self.left == 0:
            r = next(self.raw)
            try:
                meta = json.loads(r["json"])
                short = min(int(meta["width"]), int(meta["height"]))
                reduce = max([f for f in (1, 2, 4, 8) if short // f >= self.size] + [1])
                self.image = background_canvas(decode(r, reduce)[0], self.size)
                self.left = self.reuse
            except DATA_ERRORS as exc:
                streak += 1
                self.counter.bad(exc, streak, self.name)
        self.left -= 1
        return background_patch(self.image, self.size, self.rng)


class TrainStream(IterableDataset):
    """Endless training batches: per-source decode + augment (``policies``: source name -> its ``Policy``),
    mixed by probability, batched, and with the targets computed here when ``targets`` is given
    (``targets_on: worker``), handed over as ``packed_targets`` (``datamodules.packed_targets``; the
    datamodule's ``on_after_batch_transfer`` unpacks them)."""

    def __init__(self, sources: list[SourceSpec], policies: dict[str, Policy], padding: SourceSpec | None,
                 crop: int, batch_size: int, mix: str, photometric: float, shuffle: int,
                 background_reuse: int, seed: int, targets=None, base_epoch: int = 0,
                 layout: Layout = BODY_135):
        self.sources, self.policies, self.padding, self.layout = sources, policies, padding, layout
        self.crop, self.batch_size, self.mix, self.photometric = crop, batch_size, mix, photometric
        self.shuffle, self.background_reuse, self.seed = shuffle, background_reuse, seed
        self.targets, self.base_epoch, self._iters = targets, base_epoch, 0

    def __iter__(self) -> Iterator[dict]:
        rank, world, worker, nworkers = worker_position()
        if self.targets is not None:
            keep_freed_memory()
        epoch = self.base_epoch + self._iters
        self._iters += 1
        counter = Counter()
        where = (rank, worker, epoch)
        backgrounds = None
        if self.padding is not None:
            raw = raw_stream(self.padding.urls, rank, world, make_seed(self.seed, "pad", *where), counter,
                             self.shuffle)
            backgrounds = Backgrounds(raw, self.crop, self.background_reuse,
                                      make_seed(self.seed, "bg", *where), counter, self.padding.name)
        streams = [self._samples(s, rank, world, where, counter, backgrounds) for s in self.sources]
        probs = [s.probability for s in self.sources]
        if self.mix == "per_batch":
            mixed = mix_per_batch(streams, probs, self.batch_size, self.seed, epoch, worker, nworkers)
        else:
            mixed = mix_per_sample(streams, probs, make_seed(self.seed, "mix", *where))
        for batch in wds.batched(self.batch_size, collation_fn=collate, partial=False)(mixed):
            batch["skipped"] = torch.tensor(counter.take())
            if self.targets is not None:
                batch = add_targets(batch, self.targets)
                batch["packed_targets"] = pack(batch.pop("target"), batch.pop("weight"))
            yield batch

    def _samples(self, spec: SourceSpec, rank: int, world: int, where: tuple, counter: Counter,
                 backgrounds: Backgrounds | None) -> Iterator[dict]:
        augment = Augment(self.policies[spec.name], self.crop, self.photometric, self.layout)
        augment.seed(make_seed(self.seed, "aug", spec.name, *where) % 2**32)
        raw = raw_stream(spec.urls, rank, world, make_seed(self.seed, spec.name, *where), counter,
                         self.shuffle)
        background_only, streak = spec.policy == "background", 0
        for r in raw:
            try:
                image, meta, ignore = decode(r, num_keypoints=self.layout.num_keypoints)
                out = augment(image, meta, ignore, backgrounds.next if backgrounds else None)
                streak = 0
            except DATA_ERRORS as exc:
                streak += 1
                counter.bad(exc, streak, spec.name)
                continue
            out.update(key=r["__key__"], source=spec.name,
                       labelled=labelled_of(out["groups"], background_only, self.layout))
            yield out


class ValStream(IterableDataset):
    """Each validation image once across all ranks and workers: finite shards split by node then by worker
    (``empty_check=False``: a rank or worker may get none), no augmentation, ``eval_sample``; every sample
    names its source's ``gt`` json. ``layout``: the shards'."""

    def __init__(self, sources: list[SourceSpec], size: int, fit: str, batch_size: int,
                 layout: Layout = BODY_135):
        self.sources, self.size, self.fit, self.batch_size = sources, size, fit, batch_size
        self.layout = layout

    def __iter__(self) -> Iterator[dict]:
        counter = Counter()
        for spec in self.sources:
            shards = wds.DataPipeline(wds.SimpleShardList(list(spec.urls)), wds.split_by_node,
                                      wds.split_by_worker, wds.tarfile_to_samples(handler=counter.handler))
            samples = (s for s in (self._sample(r, spec, counter) for r in shards) if s is not None)
            for batch in wds.batched(self.batch_size, collation_fn=collate_eval, partial=True)(samples):
                batch["skipped"] = torch.tensor(counter.take())
                yield batch

    def _sample(self, raw: dict, spec: SourceSpec, counter: Counter) -> dict | None:
        try:
            k = self.layout.num_keypoints
            image, meta, ignore = decode(raw, num_keypoints=k)
            out = eval_sample(image, meta, ignore, self.size, self.fit, k)
            out.update(image_id=int(meta["image_id"]), key=raw["__key__"], source=spec.name, gt=spec.gt,
                       labelled=labelled_of(out["groups"], spec.policy == "background", self.layout))
            return out
        except DATA_ERRORS as exc:
            counter.bad(exc)
            return None
