"""A callback the multi-process training tests add (``+callbacks.probe._target_=tests.run_probes.KeyProbe``):
each rank writes what it saw to ``<out>/rank<global rank>.json`` (subprocess runs cannot return it)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import lightning as L


class KeyProbe(L.Callback):
    def __init__(self, out: str, every_step: bool = False):
        self.out, self.every_step = Path(out), every_step
        self.keys: list[str] = []
        self.steps = 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.keys += list(batch["key"])
        self.steps += 1

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.every_step:
            self._write(trainer)

    def on_validation_end(self, trainer, pl_module):
        self._write(trainer)

    def on_train_end(self, trainer, pl_module):
        self._write(trainer)

    def _write(self, trainer) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        record = {"rank": trainer.global_rank, "world": trainer.world_size, "node": trainer.node_rank,
                  "steps": self.steps, "global_step": trainer.global_step, "keys": self.keys,
                  "metrics": metrics,
                  "env": {k: os.environ.get(k) for k in ("RANK", "WORLD_SIZE", "NODE_RANK")}}
        (self.out / f"rank{trainer.global_rank}.json").write_text(json.dumps(record))
