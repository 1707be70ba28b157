"""The converter contract: what a ``sources.<name>`` node in conf/shards.yaml instantiates.

A converter is configured with one mapping of input paths per split (``train:`` / ``val:``; a split left
null is not built). ``plan(split)`` loads and checks the annotation files (structural problems raise
``InputError`` here, before any shard is written) and lists the work; ``convert(item)`` turns one item
into a ``Record`` or raises ``SkipRecord``. Converters with no files (the synthetic world) yield records
from ``plan(split).stream`` instead.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sharding.people import InputError, SkipRecord
from src.core.record import Record
from src.core.skeleton import BODY_135, Layout

SPLITS = ("train", "val")


@dataclass
class Plan:
    """The work for one split: ``items`` for ``convert`` (or a record ``stream``), records already known to
    be bad, and counts worth reporting that are not errors (e.g. images without people)."""

    items: list = field(default_factory=list)
    skipped: list[SkipRecord] = field(default_factory=list)
    notes: dict[str, int] = field(default_factory=dict)
    stream: Iterator[Record] | None = None
    total: int | None = None


class Source:
    """Base converter. Subclasses set ``version`` (bump it when output changes: re-running rebuilds),
    ``groups`` (the groups of ``layout`` this format labels), ``path_keys`` and, when their records hold
    another layout's points than BODY_135's, ``layout``."""

    version = "1"
    layout: Layout = BODY_135
    groups: list[str] = []
    path_keys: tuple[str, ...] = ()

    def __init__(self, train: dict | None = None, val: dict | None = None, **options):
        self.splits = {s: dict(p) for s, p in (("train", train), ("val", val)) if p}
        self.options = options
        for split, paths in self.splits.items():
            unknown = set(paths) - set(self.path_keys)
            if unknown:
                raise InputError(f"{type(self).__name__}: unknown input key(s) {sorted(unknown)} in split "
                                 f"{split!r}; expected {list(self.path_keys)}")

    def configured(self) -> list[str]:
        """Splits with every required path set (not null)."""
        return [s for s, p in self.splits.items() if all(p.get(k) for k in self.path_keys)]

    def inputs(self, split: str) -> dict[str, Path]:
        return {k: Path(self.splits[split][k]).expanduser() for k in self.path_keys}

    def missing(self, split: str) -> list[str]:
        """Input paths of ``split`` that do not exist (the source is then listed and skipped)."""
        return [str(p) for p in self.inputs(split).values() if not p.exists()]

    def fingerprint_extra(self) -> dict:
        """Everything besides input files and version that changes the output."""
        return {"options": self.options}

    def plan(self, split: str) -> Plan:
        raise NotImplementedError

    def convert(self, item) -> Record:
        raise NotImplementedError


def load_json(path: Path, kind: type = dict):
    """Parse ``path`` or raise ``InputError`` naming it; ``kind`` is the expected top-level type."""
    try:
        with open(path, "rb") as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, kind):
        raise InputError(f"{path}: top level must be a JSON {kind.__name__}, got {type(data).__name__}")
    return data


def require(obj: dict, keys: tuple[str, ...], path: Path, where: str) -> None:
    """Raise ``InputError`` naming the file, the entry and the first missing field."""
    if not isinstance(obj, dict):
        raise InputError(f"{path}: {where} must be an object, got {type(obj).__name__}")
    for k in keys:
        if k not in obj:
            raise InputError(f"{path}: required field {k!r} missing in {where}")
