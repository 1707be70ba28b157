"""``last.ckpt`` when the scheduler stops a run: on SIGTERM (preemption, ``scancel``, the end of a SLURM time
limit) and on SIGUSR1 (SLURM's ``--signal=SIGUSR1@90`` warning, or ``kill -USR1`` for a checkpoint now).

Lightning 2.6 turns SIGTERM into a ``SIGTERMException`` at the next step boundary (all ranks agree through its
per-step broadcast) and saves nothing; this callback writes ``<dirpath>/last.ckpt`` there, on every rank
together (rank 0 writes), and the process exits. SIGUSR1 only raises a flag: at the next batch end the ranks
agree (any rank's flag counts) and write ``last.ckpt``, and training goes on. Under SLURM with auto-requeue
Lightning's own SIGUSR1 handler (``hpc_ckpt_N.ckpt`` + ``scontrol requeue``) still runs: this one is chained
after it. ``ckpt_path=last`` resumes from the file either way.
"""

from __future__ import annotations

import logging
import signal
from pathlib import Path

import lightning as L
from lightning.pytorch.utilities.exceptions import SIGTERMException

log = logging.getLogger(__name__)


class SignalCheckpoint(L.Callback):
    def __init__(self, dirpath: str, filename: str = "last.ckpt", sigusr1: bool = True):
        self.path = Path(dirpath) / filename
        self.sigusr1 = sigusr1 and hasattr(signal, "SIGUSR1")
        self.requested = False
        self._previous = None

    def _on_sigusr1(self, signum, frame) -> None:
        self.requested = True
        if callable(self._previous):
            self._previous(signum, frame)

    def on_train_start(self, trainer, pl_module) -> None:
        # Lightning registers its handlers just before this hook: keep any of them (SLURM requeue) chained.
        if self.sigusr1:
            try:
                self._previous = signal.getsignal(signal.SIGUSR1)
                signal.signal(signal.SIGUSR1, self._on_sigusr1)
            except ValueError:  # not the main thread: no signals here
                self.sigusr1 = False

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not self.sigusr1:
            return
        if trainer.strategy.reduce_boolean_decision(self.requested, all=False):
            self.requested = False
            self._save(trainer, "SIGUSR1")

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if isinstance(exception, SIGTERMException) and trainer.global_step > 0:
            self._save(trainer, "SIGTERM")

    def on_train_end(self, trainer, pl_module) -> None:
        self._restore()

    def teardown(self, trainer, pl_module, stage: str) -> None:
        self._restore()

    def _restore(self) -> None:
        if self.sigusr1 and self._previous is not None:
            signal.signal(signal.SIGUSR1, self._previous)
            self._previous = None

    def _save(self, trainer, why: str) -> None:
        trainer.save_checkpoint(self.path)
        if trainer.is_global_zero:
            log.info("%s: saved %s at step %d", why, self.path, trainer.global_step)
