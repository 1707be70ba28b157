"""The ablation table (paper Table 1) from a sweep directory: one row per run, and AP against latency.

``python -m src.sweep_report DIR [--out PNG]`` finds every ``run_record.json`` under DIR (written by
:class:`src.training.sweep_record.RunRecord` at the end of each training run), prints a Markdown table
(parameters, GFLOPs at 480x480, measured latency, val AP per part) and writes ``DIR/sweep_report.png``
(whole-body AP, and each part's AP, against latency) plus ``DIR/sweep_report.md`` holding the same table.
Runs of the paper's Table 1 presets (``+sweep=table1``) get a second table: the paper's AP/AR/APs/ARs beside
the measured body AP/AR.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

RECORD = "run_record.json"
PARTS = ("body", "foot", "face", "hand", "wholebody")
REQUIRED = ("model", "params_m", "gflops_480", "latency_ms", "ap")


def load_records(root: str | Path) -> list[dict]:
    """Every run record under ``root``, sorted by latency; a record missing a field is an error naming it."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"sweep_report: {root} is not a directory")
    records = []
    for path in sorted(root.rglob(RECORD)):
        try:
            rec = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON ({err})") from err
        missing = [k for k in REQUIRED if k not in rec]
        if missing:
            raise ValueError(f"{path}: run record lacks field {missing[0]!r}")
        rec["path"] = str(path.parent)
        records.append(rec)
    if not records:
        raise FileNotFoundError(f"sweep_report: no {RECORD} under {root}")
    return sorted(records, key=lambda r: r["latency_ms"])


def _ap(rec: dict, part: str) -> float:
    """AP of one part; ``hand`` falls back to the mean of both hands; absent parts are NaN."""
    ap = rec["ap"]
    if part in ap:
        return float(ap[part])
    if part == "hand" and "lefthand" in ap and "righthand" in ap:
        return (float(ap["lefthand"]) + float(ap["righthand"])) / 2
    return float("nan")


def table(records: list[dict]) -> str:
    """Markdown table, one row per run."""
    head = ["run", "model", "params (M)", "GFLOPs@480", "latency (ms)", "device"] + [f"AP {p}" for p in PARTS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for rec in records:
        row = [Path(rec["path"]).name, str(rec["model"]), f"{rec['params_m']:.2f}",
               f"{rec['gflops_480']:.1f}", f"{rec['latency_ms']:.1f}", str(rec.get("latency_device", "?"))]
        row += [f"{_ap(rec, p):.3f}" for p in PARTS]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


# Paper Table 1 (spec §11.3, COCO val body): stage structure -> (PAF, CM, AP, AR multi-scale, APs, ARs single
# scale). A preset's name carries its structure (``table1_paf3x8_96-256_cm8x192``, ``matched/..._as_...``,
# ``table1_cpu/paf3x8_24-64_cm8x48``): PAF stages x blocks and CM blocks identify the row at any width.
PAPER_TABLE1 = {
    "paf1x10_cm10": ("1s, 10b, 256w", "1s, 10b, 256w", 65.8, 70.3, 56.1, 61.1),
    "paf2x8_cm8": ("2s, 8b, 128-288w", "1s, 8b, 256w", 66.1, 70.5, 56.7, 61.9),
    "paf2x10_cm10": ("2s, 10b, 128-256w", "1s, 10b, 256w", 66.1, 70.7, 57.0, 62.0),
    "paf3x8_cm8": ("3s, 8b, 96-256w", "1s, 8b, 192w", 66.4, 70.9, 56.9, 61.9),
    "paf4x8_cm8": ("4s, 8b, 96-256w", "1s, 8b, 224w", 65.7, 70.2, 56.3, 61.4),
    "paf5x8_cm5": ("5s, 8b, 64-256w", "1s, 5b, 256w", 65.5, 70.1, 56.7, 61.8),
}
STRUCTURE = re.compile(r"(paf\d+x\d+)_[\d-]+_(cm\d+)x")


def paper_row(model: str) -> tuple | None:
    """The paper's Table 1 row of a preset name (the structure it names, before any ``_as_``), else None."""
    found = STRUCTURE.search(str(model).split("/")[-1].split("_as_")[0])
    return PAPER_TABLE1.get(f"{found[1]}_{found[2]}") if found else None


def table1(records: list[dict]) -> str:
    """The paper's body AP/AR (x100) beside the measured ones, for the runs of Table 1 presets ("" if none).
    Measured: the run's validation (its own data and ``model.val_scales``), not the paper's COCO val."""
    rows = [(rec, paper_row(rec["model"])) for rec in records]
    rows = [(rec, row) for rec, row in rows if row is not None]
    if not rows:
        return ""
    head = ["run", "PAF", "CM", "paper AP", "paper AR", "paper APs", "paper ARs", "AP body", "AR body",
            "GFLOPs@480", "latency (ms)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for rec, (paf, cm, *paper) in rows:
        ar = rec.get("metrics", {}).get("body", {}).get("AR", float("nan"))
        cells = [Path(rec["path"]).name, paf, cm, *(f"{v:.1f}" for v in paper),
                 f"{100 * _ap(rec, 'body'):.1f}", f"{100 * float(ar):.1f}", f"{rec['gflops_480']:.1f}",
                 f"{rec['latency_ms']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(records: list[dict], out: str | Path) -> None:
    """Whole-body AP against latency (one labelled point per run), and each part's AP beside it."""
    lat = [r["latency_ms"] for r in records]
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 4.5))
    ax0.scatter(lat, [_ap(r, "wholebody") for r in records], color="k")
    for rec, x in zip(records, lat, strict=True):
        ax0.annotate(Path(rec["path"]).name, (x, _ap(rec, "wholebody")), fontsize=8, xytext=(4, 4),
                     textcoords="offset points")
    ax0.set(xlabel="latency (ms, batch 1)", ylabel="whole-body AP", title="Whole-body AP vs latency")
    for part in PARTS[:-1]:
        ax1.plot(lat, [_ap(r, part) for r in records], "o-", label=part)
    ax1.set(xlabel="latency (ms, batch 1)", ylabel="AP", title="AP per part vs latency")
    ax1.legend()
    for ax in (ax0, ax1):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", help="sweep directory (searched recursively for run_record.json)")
    parser.add_argument("--out", help="PNG path (default DIR/sweep_report.png)")
    args = parser.parse_args(argv)
    records = load_records(args.dir)
    text = table(records)
    paper = table1(records)
    if paper:
        text += "\n\nPaper Table 1 (COCO val body, x100) beside this sweep's body AP/AR:\n\n" + paper
    print(text)
    Path(args.dir, "sweep_report.md").write_text(text + "\n")
    out = args.out or str(Path(args.dir) / "sweep_report.png")
    plot(records, out)
    print(f"plot: {out}")


if __name__ == "__main__":
    main()
