"""Write one source split as WebDataset tars plus a manifest, atomically and only when its inputs changed.

Layout: ``out_dir/<source>/<split>/<source>-<split>-%06d.tar``, ``manifest.json`` beside them, and for val
splits ``gt.json`` (COCO-WholeBody) for the evaluator. A build goes into a hidden staging folder
(``.<split>.staging``) with every tar first named ``*.tar.tmp`` and renamed when closed; only a complete
build replaces the old one (old manifest removed first, tars moved in, ``gt.json`` and then ``manifest.json``
written last, each via a temporary name). An interrupted or failed run therefore leaves the previous build
or nothing, never a truncated tar or a manifest naming missing shards.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import random
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import webdataset as wds

from sharding.people import SkipRecord, non_finite
from sharding.source import Source
from src.core.record import Record
from src.core.skeleton import BODY_135, Layout

MANIFEST = "manifest.json"
FORMAT = 2  # of the shard members (src/core/record.py); a new format rebuilds every split


@dataclass
class Settings:
    max_count: int = 1000  # samples per shard
    max_bytes: int = 512 * 2**20  # bytes per shard (before tar overhead)
    workers: int = 0  # converter processes; 0 converts in this process
    seed: int = 0  # train items are shuffled with it, so every shard holds a mix
    max_examples: int = 5  # skipped records quoted in the manifest per reason


def _describe(path: Path) -> dict:
    """Size and mtime of a file, or count/total size/latest mtime of a folder's files (recursively)."""
    if path.is_file():
        st = path.stat()
        return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
    n = size = latest = 0
    for root, _, files in os.walk(path):
        for f in files:
            st = os.stat(os.path.join(root, f))
            n, size, latest = n + 1, size + st.st_size, max(latest, st.st_mtime_ns)
    return {"files": n, "size": size, "mtime_ns": latest}


def fingerprint(conv: Source, split: str, settings: Settings) -> str:
    """Hash of the inputs' sizes and mtimes, the converter's class, version and options, and the shard
    settings that shape the output."""
    desc = {
        "converter": f"{type(conv).__module__}.{type(conv).__qualname__}",
        "version": conv.version,
        "inputs": {k: [str(p.resolve()), _describe(p)] for k, p in conv.inputs(split).items()},
        "extra": conv.fingerprint_extra(),
        "settings": [settings.max_count, settings.max_bytes, settings.seed, FORMAT],
    }
    return hashlib.sha256(json.dumps(desc, sort_keys=True, default=str).encode()).hexdigest()


class _HashingFile:
    """A write-only file that hashes what passes through it."""

    def __init__(self, path: Path):
        self.f, self.sha = open(path, "wb"), hashlib.sha256()

    def write(self, b) -> int:
        self.sha.update(b)
        return self.f.write(b)

    def close(self) -> None:
        self.f.close()


class _ShardSink:
    """Rolls records into ``<prefix>-%06d.tar`` inside ``folder``, each written as ``.tar.tmp`` first."""

    def __init__(self, folder: Path, prefix: str, settings: Settings):
        self.folder, self.prefix, self.settings = folder, prefix, settings
        self.shards: list[dict] = []
        self.tar = self.file = None

    def write(self, rec: Record) -> None:
        full = self.tar is not None and (self.count >= self.settings.max_count
                                         or self.size >= self.settings.max_bytes)
        if full:
            self._close()
        if self.tar is None:
            name = f"{self.prefix}-{len(self.shards):06d}.tar"
            self.file = _HashingFile(self.folder / (name + ".tmp"))
            self.tar = wds.TarWriter(self.file, encoder=False, mtime=0)
            self.name, self.count, self.size = name, 0, 0
        self.size += self.tar.write(rec.members())
        self.count += 1

    def _close(self) -> None:
        self.tar.close()
        self.file.close()
        os.replace(self.folder / (self.name + ".tmp"), self.folder / self.name)
        self.shards.append({"name": self.name, "samples": self.count, "sha256": self.file.sha.hexdigest(),
                            "bytes": (self.folder / self.name).stat().st_size})
        self.tar = None

    def close(self) -> list[dict]:
        if self.tar is not None:
            self._close()
        return self.shards


class _Tally:
    """Counts for the manifest: samples, people, labelled points per group, masks, skipped records."""

    def __init__(self, max_examples: int, layout: Layout):
        self.layout = layout
        self.samples = self.people = self.masks = 0
        self.labelled = dict.fromkeys(layout.groups, 0)
        self.groups: set[str] = set()
        self.skipped: dict[str, int] = {}
        self.examples: list[dict] = []
        self.max_examples = max_examples

    def add(self, rec: Record, kps: list[np.ndarray]) -> None:
        self.samples += 1
        self.people += len(kps)
        self.masks += rec.ignore_png is not None
        self.groups.update(rec.meta["groups"])
        for kp in kps:
            lab = kp[:, 2] <= 1
            for g, idx in self.layout.groups.items():
                self.labelled[g] += int(lab[idx.start:idx.stop].sum())

    def skip(self, s: SkipRecord) -> None:
        self.skipped[s.reason] = self.skipped.get(s.reason, 0) + 1
        if sum(e["reason"] == s.reason for e in self.examples) < self.max_examples:
            self.examples.append({"reason": s.reason, "item": s.item, "detail": s.detail})


_KEY_BAD = re.compile(r"[^A-Za-z0-9_-]")


def _check(rec: Record, name: str, layout: Layout) -> list[np.ndarray]:
    """Enforce the record contract the loader relies on; returns the people's keypoint arrays."""
    meta = rec.meta
    meta["source"] = name
    rec.key = _KEY_BAD.sub("_", rec.key)  # WebDataset splits keys at the first dot
    if not rec.key.startswith(name):  # keys stay unique when a loader mixes sources
        rec.key = f"{name}-{rec.key}"
    for k in ("image_id", "file_name", "width", "height", "groups", "people"):
        if k not in meta:
            raise KeyError(f"converter for {name!r} produced a record without meta[{k!r}] ({rec.key})")
    if rec.ext not in ("jpg", "png"):
        raise ValueError(f"{name}: record {rec.key} has image extension {rec.ext!r}; expected jpg or png")
    kps = [np.asarray(p["keypoints"], np.float32) for p in meta["people"]]
    for kp in kps:
        if kp.shape != (layout.num_keypoints, 3):
            raise ValueError(f"{name}: record {rec.key} has a person with keypoints of shape {kp.shape}, "
                             f"expected ({layout.num_keypoints}, 3) of layout {layout.name}")
    return kps


def _gt_annotations(meta: dict, next_id: int, layout: Layout) -> list[dict]:
    """COCO(-WholeBody) GT entries for one val image, equal to the source's own GT where it has one: the
    COCO-WholeBody fields for the BODY_135 family, plain COCO ``keypoints`` (K x 3) for any other layout.

    People become non-crowd annotations. A hand's wrist is the person's ``hand_wrists`` entry when the
    converter kept it (COCO-WholeBody annotates it apart from the body wrist); otherwise what
    ``to_wholebody133`` writes (the body wrist, or nothing for a hand without points).
    ``meta["unlabelled"]`` (crowds, people without keypoints) become keypoint-free entries, which the
    evaluator ignores but matches detections to, as with the original GT."""
    if not layout.wholebody_parts:
        return _coco_annotations(meta, next_id, layout.num_keypoints)
    anns = []
    for p in meta["people"]:
        fields = BODY_135.to_wholebody133(np.asarray(p["keypoints"], np.float32), as_gt=True)
        for k, hand in enumerate(("lefthand_kpts", "righthand_kpts")):
            if "hand_wrists" in p:
                fields[hand][:3] = [float(v) for v in p["hand_wrists"][k]]
        anns.append({"iscrowd": 0, "bbox": p["bbox"], "area": p["area"],
                     "num_keypoints": int(sum(v > 0 for v in fields["keypoints"][2::3])), **fields})
    empty = {k: [0.0] * (3 * len(idx)) for k, idx in BODY_135.wholebody_parts.items()}
    for u in meta.get("unlabelled", []):
        anns.append({"iscrowd": int(u["iscrowd"]), "bbox": u["bbox"], "area": u["area"],
                     "num_keypoints": 0, **empty})
    return [{"id": next_id + i, "image_id": meta["image_id"], "category_id": 1, **a}
            for i, a in enumerate(anns)]


def _coco_annotations(meta: dict, next_id: int, k: int) -> list[dict]:
    """Plain COCO keypoint GT entries (v 2 visible, 1 occluded, 0 unlabelled) for one val image."""
    anns = []
    for p in meta["people"]:
        xyv = Layout.to_coco(p["keypoints"], as_gt=True)
        anns.append({"iscrowd": 0, "bbox": p["bbox"], "area": p["area"],
                     "num_keypoints": int((xyv[:, 2] > 0).sum()),
                     "keypoints": [round(float(x), 2) for x in xyv.reshape(-1)]})
    for u in meta.get("unlabelled", []):
        anns.append({"iscrowd": int(u["iscrowd"]), "bbox": u["bbox"], "area": u["area"], "num_keypoints": 0,
                     "keypoints": [0.0] * (3 * k)})
    return [{"id": next_id + i, "image_id": meta["image_id"], "category_id": 1, **a}
            for i, a in enumerate(anns)]


_WORKER_CONV: Source | None = None


def _convert_one(item):
    try:
        rec = _WORKER_CONV.convert(item)
    except SkipRecord as s:
        return s
    bad = non_finite(rec.meta)
    if bad is not None:  # the last guard: no NaN or infinity reaches a shard or gt.json
        return SkipRecord("non_finite_value", rec.meta.get("file_name", rec.key), f"({bad})")
    return rec


def _records(conv: Source, plan, workers: int):
    """Records or ``SkipRecord``s, in item order; forked workers inherit the loaded converter."""
    global _WORKER_CONV
    if plan.stream is not None:
        yield from plan.stream
        return
    _WORKER_CONV = conv
    if workers <= 0 or len(plan.items) < 2:
        yield from map(_convert_one, plan.items)
        return
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        yield from pool.imap(_convert_one, plan.items, chunksize=8)


def _write_atomic(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, allow_nan=False))
    os.replace(tmp, path)


def _category(layout: Layout) -> dict:
    """The one category of a val gt.json: COCO's person, with the layout's keypoints and skeleton (1-based)
    for any layout but the BODY_135 family (scored by COCO-WholeBody's fields)."""
    if layout.wholebody_parts:
        return {"id": 1, "name": "person", "supercategory": "person"}
    return {"id": 1, "name": layout.name, "supercategory": layout.name, "keypoints": list(layout.names),
            "skeleton": [[a + 1, b + 1] for a, b in layout.pairs]}


def read_manifest(split_dir: Path) -> dict | None:
    try:
        return json.loads((split_dir / MANIFEST).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def is_current(split_dir: Path, fp: str) -> bool:
    """The manifest matches ``fp`` and every shard it names is there with its recorded size (and a val
    split has its gt.json)."""
    m = read_manifest(split_dir)
    return bool(m) and m.get("fingerprint") == fp and all(
        (split_dir / s["name"]).is_file() and (split_dir / s["name"]).stat().st_size == s["bytes"]
        for s in m["shards"]) and (m.get("split") != "val" or (split_dir / "gt.json").is_file())


def build_split(name: str, conv: Source, split: str, out_dir: Path, settings: Settings | None = None,
                progress=None) -> tuple[str, dict]:
    """Build ``out_dir/name/split`` unless it is current. Returns (``"built"`` | ``"unchanged"``, manifest).
    ``progress(total)`` may return a tqdm-like bar (``update``, ``close``)."""
    settings = settings or Settings()
    split_dir = Path(out_dir) / name / split
    fp = fingerprint(conv, split, settings)
    if is_current(split_dir, fp):
        return "unchanged", read_manifest(split_dir)
    t0 = time.time()
    plan = conv.plan(split)  # structural errors surface here, before anything is written
    if split == "train" and plan.stream is None:
        random.Random(settings.seed).shuffle(plan.items)
    staging = split_dir.parent / f".{split}.staging"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    tally = _Tally(settings.max_examples, conv.layout)
    for s in plan.skipped:
        tally.skip(s)
    images, annotations, seen_keys, seen_ids = [], [], set(), set()
    total = plan.total if plan.stream is not None else len(plan.items)
    bar = progress(total) if progress else None
    try:
        sink = _ShardSink(staging, f"{name}-{split}", settings)
        for rec in _records(conv, plan, settings.workers):
            if bar is not None:
                bar.update(1)
            if isinstance(rec, SkipRecord):
                tally.skip(rec)
                continue
            kps = _check(rec, name, conv.layout)
            if rec.key in seen_keys or rec.meta["image_id"] in seen_ids:
                tally.skip(SkipRecord("duplicate_image", rec.meta["file_name"], f"(key {rec.key})"))
                continue
            seen_keys.add(rec.key)
            seen_ids.add(rec.meta["image_id"])
            sink.write(rec)
            tally.add(rec, kps)
            if split == "val":
                m = rec.meta
                images.append({"id": m["image_id"], "file_name": m["file_name"], "width": m["width"],
                               "height": m["height"]})
                annotations += _gt_annotations(m, len(annotations) + 1, conv.layout)
        shards = sink.close()
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        if bar is not None:
            bar.close()
    manifest = {
        "source": name, "split": split,
        "converter": f"{type(conv).__module__}.{type(conv).__qualname__}", "converter_version": conv.version,
        "fingerprint": fp, "layout": {"name": conv.layout.name, "digest": conv.layout.digest},
        "groups": sorted(tally.groups) or list(conv.groups),
        "samples": tally.samples, "people": tally.people, "ignore_masks": tally.masks,
        "labelled_keypoints": tally.labelled,
        "skipped": {"count": sum(tally.skipped.values()), "by_reason": tally.skipped,
                    "examples": tally.examples},
        "notes": plan.notes,
        "shards": shards,
        "url": f"{name}-{split}-{{000000..{max(len(shards) - 1, 0):06d}}}.tar",
        "seconds": round(time.time() - t0, 2),
    }
    _swap_in(split_dir, staging, manifest, images, annotations if split == "val" else None, conv.layout)
    return "built", manifest


def _swap_in(split_dir: Path, staging: Path, manifest: dict, images: list, annotations: list | None,
             layout: Layout = BODY_135) -> None:
    """Replace the old build: manifest away first, old tars out, new tars in, gt.json, manifest last."""
    split_dir.mkdir(parents=True, exist_ok=True)
    (split_dir / MANIFEST).unlink(missing_ok=True)
    for old in list(split_dir.glob("*.tar")) + list(split_dir.glob("*.tmp")) + [split_dir / "gt.json"]:
        old.unlink(missing_ok=True)
    for s in manifest["shards"]:
        os.replace(staging / s["name"], split_dir / s["name"])
    if annotations is not None:
        _write_atomic(split_dir / "gt.json", {
            "info": {"description": f"{manifest['source']} {manifest['split']} (written by sharding)"},
            "images": images, "annotations": annotations,
            "categories": [_category(layout)]})
    _write_atomic(split_dir / MANIFEST, manifest)
    shutil.rmtree(staging, ignore_errors=True)
