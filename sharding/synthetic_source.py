"""The synthetic world as shard sources: the renderer ``sharding.synthetic`` (``record(kind, split, index,
seed, size)``, one independently seeded sample) behind the converter contract, with the image budget split
over the five kinds.

``synthetic.train_images`` / ``val_images`` are totals over all kinds, divided by ``synthetic.mix`` with
largest remainders, so the kinds add up to exactly the requested number. Rebuilt when the counts, seed, size
or the renderer's source text (``sharding/synthetic*.py``) change.
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

from sharding.source import Plan, Source
from src.core.record import Record

KIND_GROUPS = {
    "synth_body": ["body", "foot"],
    "synth_face": ["face"],
    "synth_hand": ["lhand", "rhand"],
    "synth_wholebody": ["body", "mpii", "foot", "lhand", "rhand", "face"],
    "synth_background": ["body", "mpii", "foot", "lhand", "rhand", "face"],
}


def split_counts(total: int, mix: dict[str, float]) -> dict[str, int]:
    """``total`` images over the kinds in proportion to ``mix`` (largest remainder; sums to ``total``)."""
    weights = {k: float(v) for k, v in mix.items()}
    if any(v < 0 for v in weights.values()) or sum(weights.values()) <= 0:
        raise ValueError(f"synthetic.mix needs non-negative weights with a positive sum, got {mix}")
    s = sum(weights.values())
    exact = {k: total * v / s for k, v in weights.items()}
    counts = {k: int(v) for k, v in exact.items()}
    for k in sorted(exact, key=lambda k: counts[k] - exact[k])[: total - sum(counts.values())]:
        counts[k] += 1
    return counts


class Synthetic(Source):
    """One synthetic kind; its share of the train and val budgets is its ``mix`` weight."""

    version = "1"

    def __init__(self, kind: str, train_images: int, val_images: int, mix: dict, seed: int = 0,
                 size: int = 256):
        if kind not in KIND_GROUPS:
            raise ValueError(f"unknown synthetic kind {kind!r}; known: {sorted(KIND_GROUPS)}")
        super().__init__(kind=kind, seed=seed, size=size)
        self.kind, self.seed, self.size = kind, int(seed), int(size)
        self.groups = KIND_GROUPS[kind]
        self.counts = {"train": split_counts(int(train_images), mix).get(kind, 0),
                       "val": split_counts(int(val_images), mix).get(kind, 0)}
        self.splits = {s: {} for s, n in self.counts.items() if n > 0}

    def missing(self, split: str) -> list[str]:
        found = importlib.util.find_spec("sharding.synthetic")
        return [] if found else ["sharding/synthetic.py (the renderer)"]

    def fingerprint_extra(self) -> dict:
        files = sorted(Path(__file__).parent.glob("synthetic*.py"))  # the renderer's modules
        sha = hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()
        return {"options": self.options, "counts": self.counts, "renderer": sha}

    def plan(self, split: str) -> Plan:
        """One item per sample index, so ``shard.workers`` can draw them in parallel."""
        self.split = split
        return Plan(items=list(range(self.counts[split])))

    def convert(self, index: int) -> Record:
        from sharding.synthetic import record  # the renderer is loaded only when something is drawn

        return record(self.kind, self.split, index, self.seed, self.size)
