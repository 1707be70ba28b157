"""Entry point: score predictions with the COCO-WholeBody protocol.

``python -m src.evaluate gt=GT.json pred=PRED.json out=METRICS.json`` prints the per-part table and writes
``{part: {stat: value}}`` to ``out``. The file mode lives in :func:`evaluate_files`; ``main`` only dispatches,
so other modes (e.g. scoring a checkpoint) can sit beside it in the same entry.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from src.wholebody_eval import EvalInputError, evaluate_wholebody, format_table, load_predictions


def evaluate_files(gt: str | Path, pred: str | Path, out: str | Path) -> dict[str, dict[str, float]]:
    """Score the result file ``pred`` against ``gt``, print the table, write the metrics JSON to ``out``."""
    metrics = evaluate_wholebody(gt, load_predictions(pred))
    print(format_table(metrics))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(metrics, indent=2) + "\n")
    print(f"metrics written to {out}")
    return metrics


@hydra.main(version_base="1.3", config_path="../conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    if cfg.gt is None or cfg.pred is None:
        sys.exit("error: give both gt=GT.json and pred=PRED.json (and optionally out=METRICS.json)")
    try:
        evaluate_files(cfg.gt, cfg.pred, cfg.out)
    except EvalInputError as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
