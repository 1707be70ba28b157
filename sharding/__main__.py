"""``python -m sharding [out_dir=DIR] [only=[name,...]] [synthetic.train_images=N synthetic.val_images=M]``

Builds every configured source of conf/shards.yaml into WebDataset shards (see sharding/writer.py), skipping
sources whose inputs are absent and splits that are already current, then prints a summary table. Exit code
1 when a source failed on a structural input error (the others are still built).
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table
from tqdm import tqdm

from sharding.people import InputError
from sharding.writer import Settings, build_split
from src.core.cli import ensure_writable, report_errors, run


def _bar(label: str):
    """A progress bar per source split (silent when stdout is not a terminal)."""
    return lambda total: tqdm(total=total, desc=label, unit="img", leave=False, disable=None)


def build_all(cfg: DictConfig) -> tuple[list[dict], list[str]]:
    """Build the selected sources; returns summary rows and error messages."""
    sources = cfg.sources
    only = list(cfg.only or [])
    unknown = [n for n in only if n not in sources]
    if unknown:
        raise InputError(f"only: unknown source(s) {unknown}; known: {sorted(sources)}")
    settings = Settings(**OmegaConf.to_container(cfg.shard))
    out_dir = Path(cfg.out_dir)
    rows, errors = [], []
    for name in sources:
        node = sources[name]
        if node is None or (only and name not in only):
            continue
        conv = instantiate(node, _convert_="all")
        splits = conv.configured()
        if not splits:
            rows.append({"source": name, "split": "-", "status": "absent", "note": "no input paths set"})
        for split in splits:
            missing = conv.missing(split)
            if missing:
                rows.append({"source": name, "split": split, "status": "absent", "note": missing[0]})
                continue
            try:
                status, m = build_split(name, conv, split, out_dir, settings, _bar(f"{name}/{split}"))
            except InputError as e:
                rows.append({"source": name, "split": split, "status": "error", "note": str(e)})
                errors.append(str(e))
                continue
            rows.append({"source": name, "split": split, "status": status, "manifest": m})
    return rows, errors


def summary(rows: list[dict], out_dir: str, console: Console) -> None:
    """The end-of-run table, then the first examples of every skipped-record reason."""
    table = Table(title=f"shards in {out_dir}")
    numbers = ("samples", "people", "skipped", "shards", "MB", "s")
    for col in ("source", "split", "status", *numbers, "groups"):
        table.add_column(col, justify="right" if col in numbers else "left")
    for r in rows:
        m = r.get("manifest")
        if m is None:
            continue
        mb = sum(s["bytes"] for s in m["shards"]) / 2**20
        table.add_row(r["source"], r["split"], r["status"], str(m["samples"]), str(m["people"]),
                      str(m["skipped"]["count"]), str(len(m["shards"])), f"{mb:.1f}", f"{m['seconds']:.1f}",
                      ",".join(m["groups"]))
    console.print(table)
    absent = {}
    for r in rows:
        if r["status"] == "absent":
            absent.setdefault(r["source"], r["note"])
    for name, note in absent.items():
        console.print(f"absent, skipped: {name} ({note})", markup=False, highlight=False)
    for r in rows:
        if r["status"] == "error":
            console.print(f"[red]failed:[/red] {r['source']}/{r['split']}: {r['note']}", highlight=False)
    for r in rows:
        m = r.get("manifest")
        if m and m["skipped"]["count"]:
            reasons = ", ".join(f"{k} {v}" for k, v in m["skipped"]["by_reason"].items())
            console.print(f"[yellow]{r['source']}/{r['split']}: skipped {m['skipped']['count']} ({reasons})")
            for e in m["skipped"]["examples"]:
                console.print(f"    {e['reason']}: {e['item']} {e['detail']}", markup=False, highlight=False)


@hydra.main(version_base="1.3", config_path="../conf", config_name="shards")
@report_errors
def main(cfg: DictConfig) -> None:
    console = Console(width=None if sys.stdout.isatty() else 150)
    ensure_writable(cfg.out_dir, "out_dir", folder=True)  # before any source is read
    try:
        rows, errors = build_all(cfg)
    except InputError as e:
        console.print(f"[red]error:[/red] {e}", highlight=False)
        sys.exit(2)
    summary(rows, cfg.out_dir, console)
    if errors:
        sys.exit(1)


if __name__ == "__main__":
    run(main)
