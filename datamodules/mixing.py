"""Infinite per-source sample streams, split between DDP ranks, and the two ways of mixing them.

Rank split: a source's shards are dealt out ``shards[rank::world]`` so no two ranks ever read the same tar;
a source with fewer shards than ranks is read in order by every rank and each keeps every world-th sample
(a source with fewer samples than ranks is read whole by each, so no rank waits forever on an empty share).
Within a rank every DataLoader worker resamples the rank's shards with its own seed (webdataset
``ResampledShards``), so streams never run dry and an epoch is a fixed number of batches (``with_epoch``).

Mixing:
  ``per_sample``  every sample's source is drawn with the configured probabilities (seeded per rank, worker
                  and epoch).
  ``per_batch``   a whole batch comes from one source (the released "AlmostSameBatchAllGPUs", spec §4.4).
                  The source of global batch ``b`` is a function of (seed, epoch, b) only, so every rank picks
                  the same one without communicating. The DataLoader takes batch ``j`` from worker ``j % W``,
                  so worker ``w`` numbers its k-th batch ``b = k * W + w``. The draw is stratified: batch b
                  takes the source whose probability interval holds ``u_b = frac(u_0 + b / golden ratio)``
                  (``u_0`` seeded by seed and epoch), a low-discrepancy sequence, so after n batches every
                  source's share is within about 1/n of its probability instead of the 1/sqrt(n) of
                  independent draws - which matters when a source has p = 0.005.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import math
import random
import warnings
from collections.abc import Iterator, Sequence

import webdataset as wds


def make_seed(*parts) -> int:
    """A 63-bit seed from any hashable parts (stable across processes, unlike ``hash``)."""
    return int.from_bytes(hashlib.blake2b(repr(parts).encode(), digest_size=8).digest(), "little") >> 1


class Counter:
    """Samples dropped in this process (corrupt tar member, undecodable image, bad json); ``take()`` returns
    the count since the last call. The first few are reported as warnings; ``streak`` bad samples in a row
    from one source (nothing readable left) stop the run with an error instead of looping forever."""

    def __init__(self, report: int = 5, streak: int = 1000):
        self.total, self._taken, self._report, self._streak = 0, 0, report, streak

    def bad(self, exc: BaseException, streak: int = 0, source: str = "?") -> None:
        self.total += 1
        if self.total <= self._report:
            warnings.warn(f"skipping a bad sample: {exc}", stacklevel=2)
        if streak >= self._streak:
            raise RuntimeError(f"data source {source!r}: {streak} bad samples in a row, the last: {exc}")

    def handler(self, exc: BaseException) -> bool:
        """A webdataset ``handler``: count and continue."""
        self.bad(exc)
        return True

    def take(self) -> int:
        n, self._taken = self.total - self._taken, self.total
        return n


def rank_shards(shards: Sequence[str], rank: int, world: int) -> tuple[list[str], bool]:
    """This rank's shards, and whether samples must still be split by position (fewer shards than ranks)."""
    shards = list(shards)
    if world <= 1:
        return shards, False
    if len(shards) >= world:
        return shards[rank::world], False
    return shards, True


def every_world_th(shards: Sequence[str], rank: int, world: int, counter: Counter) -> Iterator[dict]:
    """Endless passes over all ``shards`` in order, keeping samples ``rank, rank + world, ...`` of each pass;
    when a pass leaves this rank nothing (fewer samples than ranks), every later pass is kept whole."""
    split = True
    while True:
        kept = 0
        for i, sample in enumerate(wds.DataPipeline(wds.SimpleShardList(list(shards)),
                                                    wds.tarfile_to_samples(handler=counter.handler))):
            if not split or i % world == rank:
                kept += 1
                yield sample
        if kept == 0 and not split:
            raise RuntimeError(f"no readable sample in {list(shards)}")
        split = split and kept > 0


def raw_stream(shards: Sequence[str], rank: int, world: int, seed: int, counter: Counter,
               shuffle: int = 100) -> Iterator[dict]:
    """Endless raw samples (tar members by extension) of one source for this rank, resampled with ``seed``."""
    mine, by_position = rank_shards(shards, rank, world)
    if by_position:
        stream = every_world_th(mine, rank, world, counter)
    else:
        stream = iter(wds.DataPipeline(wds.ResampledShards(mine, seed=seed, deterministic=True,
                                                           worker_seed=lambda: 0),
                                       wds.tarfile_to_samples(handler=counter.handler)))
    if shuffle > 1:
        stream = wds.shuffle(shuffle, initial=shuffle, rng=random.Random(seed))(stream)
    return stream


def mix_per_sample(streams: Sequence[Iterator[dict]], probs: Sequence[float], seed: int) -> Iterator[dict]:
    """Each sample from a source drawn with ``probs``."""
    rng, idx = random.Random(seed), range(len(streams))
    while True:
        yield next(streams[rng.choices(idx, probs)[0]])


GOLDEN = (math.sqrt(5) - 1) / 2


def batch_source(probs: Sequence[float], seed: int, epoch: int, batch: int) -> int:
    """The source of global batch ``batch`` in ``epoch``: the same on every rank and worker."""
    u = (random.Random(make_seed(seed, epoch)).random() + batch * GOLDEN) % 1.0
    edges = list(itertools.accumulate(probs))
    return min(bisect.bisect_right(edges, u * edges[-1]), len(probs) - 1)


def mix_per_batch(streams: Sequence[Iterator[dict]], probs: Sequence[float], batch_size: int, seed: int,
                  epoch: int, worker: int, num_workers: int) -> Iterator[dict]:
    """Runs of ``batch_size`` samples from one source each (module docstring for the batch numbering)."""
    k = 0
    while True:
        i = batch_source(probs, seed, epoch, k * num_workers + worker)
        for _ in range(batch_size):
            yield next(streams[i])
        k += 1
