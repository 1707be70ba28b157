"""One row of the ablation table per training run: a Lightning callback writing ``run_record.json``.

Added to a run by ``conf/sweep/*.yaml`` (``callbacks.run_record``). After every validation (so the last write
holds the final weights' numbers) rank 0 writes into ``out_dir``: the model's name and overrides, its
parameters, GFLOPs at 480x480 (2 per multiply-accumulate, :mod:`src.model.cost`), its measured batch-1
latency at ``latency_size`` on the training device, the global step, and the val AP of every part (plus the
full ``{part: {stat: value}}`` metrics). ``python -m src.sweep_report DIR`` collects these files.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import lightning as L
import torch

from src.model import cost

log = logging.getLogger(__name__)

FILE = "run_record.json"


def device_name(device: torch.device) -> str:
    """``cuda:<GPU name>`` or ``cpu:<threads> threads``."""
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return f"cpu:{torch.get_num_threads()} threads"


class RunRecord(L.Callback):
    """Writes ``out_dir/run_record.json`` after each validation; the costs are measured once."""

    def __init__(self, out_dir: str, model_name: str, overrides: str = "",
                 latency_size: tuple[int, int] = (480, 480), latency_repeats: int = 3):
        self.out_dir = Path(out_dir)
        self.model_name, self.overrides = str(model_name), str(overrides)
        self.latency_size = (int(latency_size[0]), int(latency_size[1]))
        self.latency_repeats = int(latency_repeats)
        self.costs: dict | None = None

    def measure(self, net: torch.nn.Module, device: torch.device) -> dict:
        """Parameters, GFLOPs at 480x480 and latency at ``latency_size`` of ``net`` (left as it was found)."""
        return {"params_m": cost.parameters_m(net), "gflops_480": cost.gflops(net, (480, 480)),
                "latency_ms": cost.latency_ms(net, self.latency_size, device, 1, self.latency_repeats),
                "latency_size": list(self.latency_size), "latency_device": device_name(device)}

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        metrics = getattr(pl_module, "last_metrics", None)
        if not metrics:
            log.warning("run_record: no validation metrics on the module; nothing written")
            return
        if self.costs is None:
            self.costs = self.measure(pl_module.net, pl_module.device)
        record = {"model": self.model_name, "overrides": self.overrides, "global_step": trainer.global_step,
                  **self.costs, "ap": {part: stats["AP"] for part, stats in metrics.items()},
                  "metrics": metrics}
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / FILE).write_text(json.dumps(record, indent=1) + "\n")
        log.info("run_record: %s (%.1f M params, %.0f GFLOPs@480, %.0f ms) -> %s", self.model_name,
                 record["params_m"], record["gflops_480"], record["latency_ms"], self.out_dir / FILE)
