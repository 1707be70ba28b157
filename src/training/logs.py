"""What a run writes besides checkpoints: a CSV log that a resumed run appends to, and the loss-curve PNG."""

from __future__ import annotations

import csv
from pathlib import Path

from lightning.pytorch.loggers import CSVLogger


class ResumableCSVLogger(CSVLogger):
    """``<save_dir>/metrics.csv``, continued on resume instead of deleted.

    Lightning's CSV writer deletes an existing ``metrics.csv``. On a resume from step ``resume_step`` this
    logger keeps the earlier rows before that step (a checkpoint at global step N holds the training of steps
    0 ... N-1; rows of step N and later were logged after it, before the crash, and the resumed run logs those
    steps again), so the file reads as one run with no duplicated step.
    """

    def __init__(self, save_dir: str, resume_step: int | None = None, **kwargs):
        super().__init__(save_dir, name="", version="", **kwargs)
        self.resume_step = resume_step

    @property
    def experiment(self):
        if self._experiment is None:
            path = Path(self.log_dir) / "metrics.csv"
            keep, header = _read_rows(path, self.resume_step) if self.resume_step is not None else ([], [])
            writer = super().experiment  # deletes the old file
            if header:
                with open(path, "w", newline="") as f:
                    out = csv.DictWriter(f, fieldnames=header)
                    out.writeheader()
                    out.writerows(keep)
                writer.metrics_keys = list(header)
        return self._experiment


def _read_rows(path: Path, before: int) -> tuple[list[dict], list[str]]:
    if not path.is_file():
        return [], []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        rows = [r for r in reader if r.get("step") not in (None, "") and int(float(r["step"])) < before]
        return rows, list(reader.fieldnames or [])


def loss_curve(metrics_csv: str | Path, png: str | Path) -> Path:
    """Plot train/loss (and val AP when logged) against step from a run's metrics.csv."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(metrics_csv, newline="") as f:
        rows = list(csv.DictReader(f))

    def series(key: str) -> tuple[list[int], list[float]]:
        pts = [(int(float(r["step"])), float(r[key])) for r in rows if r.get(key) not in (None, "")]
        return [s for s, _ in pts], [v for _, v in pts]

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(*series("train/loss"), label="train/loss", lw=1)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (sum over stages)")
    steps, ap = series("val/wholebody/AP") if rows and "val/wholebody/AP" in rows[0] else ([], [])
    if steps:
        ax2 = ax.twinx()
        ax2.plot(steps, ap, "o-", color="tab:red", label="val wholebody AP")
        body = series("val/body/AP")
        ax2.plot(*body, "s--", color="tab:green", label="val body AP")
        ax2.set_ylabel("AP")
        ax2.legend(loc="upper right")
    ax.legend(loc="upper left")
    fig.tight_layout()
    png = Path(png)
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return png
