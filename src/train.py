"""Train the whole-body network.

``python -m src.train +experiment=smoke`` (CPU) or ``+experiment=deep_wholebody trainer.devices=4`` (DDP).
``ckpt_path=last`` resumes the run in ``run_dir`` at its saved step (optimiser, schedule, CSV log continue).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

os.environ.setdefault("WANDB_ERROR_REPORTING", "false")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import hydra  # noqa: E402
import lightning as L  # noqa: E402
from hydra.errors import InstantiationException  # noqa: E402
from hydra.utils import instantiate  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from src.core import checkpoint  # noqa: E402
from src.core.cli import report_errors, run  # noqa: E402
from src.training.logs import ResumableCSVLogger, loss_curve  # noqa: E402
from src.training.module import METRICS_FILE  # noqa: E402

log = logging.getLogger(__name__)


def resolve_ckpt(cfg: DictConfig) -> tuple[str | None, int | None]:
    """``ckpt_path`` (``last`` = the run's last.ckpt) and the step it holds; an absent file is an error."""
    if not cfg.ckpt_path:
        return None, None
    path = Path(cfg.run_dir) / "checkpoints" / "last.ckpt" if cfg.ckpt_path == "last" else Path(cfg.ckpt_path)
    if not path.is_file():
        raise FileNotFoundError(f"ckpt_path={cfg.ckpt_path}: no checkpoint at {path}")
    return str(path), checkpoint.global_step(path)


def wandb_mode(offline: bool) -> str:
    """The mode wandb runs in: ``WANDB_MODE`` from the environment when set, else the config's ``offline``."""
    return os.environ.get("WANDB_MODE") or ("offline" if offline else "online")


def build_loggers(cfg: DictConfig, resume_step: int | None = None) -> list:
    """The run's loggers. wandb gets an explicit ``mode`` (Lightning's ``offline`` alone only ever turns
    offline on, and it rewrites ``WANDB_MODE``): ``logger.wandb.offline=false`` goes online, the
    environment's ``WANDB_MODE`` (``offline``, ``disabled``, ...) wins over both."""
    loggers = []
    for c in (cfg.logger or {}).values():
        if c._target_.endswith(ResumableCSVLogger.__name__):
            loggers.append(instantiate(c, resume_step=resume_step))
        elif c._target_.endswith("WandbLogger"):
            mode = wandb_mode(bool(c.get("offline", False)))
            loggers.append(instantiate(c, offline=mode in ("offline", "dryrun"), mode=mode))
        else:
            loggers.append(instantiate(c))
    return loggers


def train(cfg: DictConfig) -> dict:
    """Build model, trainer and loggers (config errors surface here, before any data is read), then fit.
    Checkpoints (``ckpt_path``, ``model.init_from``, a backbone file) are read weights-only unless
    ``trust_checkpoint=true``."""
    trust = bool(cfg.get("trust_checkpoint", False))
    with checkpoint.trusted(trust):
        return _train(cfg, trust)


def _train(cfg: DictConfig, trust: bool) -> dict:
    L.seed_everything(cfg.seed, workers=True)
    ckpt, resume_step = resolve_ckpt(cfg)
    try:
        model = instantiate(cfg.model, _recursive_=False)
    except InstantiationException as err:  # model.init_from / a backbone file: the reader's own one line
        if isinstance(err.__cause__, checkpoint.CheckpointError):
            raise err.__cause__ from None
        raise
    callbacks = [instantiate(c) for c in cfg.callbacks.values()]
    loggers = build_loggers(cfg, resume_step)
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    datamodule = instantiate(cfg.data)
    if not datamodule.val_gt:
        log.warning("no validation set (data.val finds no shards): the run trains without metrics, "
                    "best.ckpt and %s", METRICS_FILE)
    if ckpt:
        log.info("resuming %s from %s at step %d", cfg.run_dir, ckpt, resume_step)
    # Lightning reads the resumed checkpoint itself: weights-only too (its default follows torch.load's, which
    # an environment variable can flip), unless the user trusts the file.
    trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt, weights_only=not trust)
    # After ddp_spawn the parent's trainer keeps its callback metrics but not the step: trust val/step there.
    validated = int(trainer.callback_metrics.get("val/step", -1))
    if validated < trainer.global_step and datamodule.val_gt:
        trainer.validate(model, datamodule=datamodule)  # the final metrics are those of the final weights
        validated = trainer.global_step
    run_dir = Path(cfg.run_dir)
    metrics_file = run_dir / METRICS_FILE
    out = {"global_step": max(trainer.global_step, validated), "bad_steps": model.bad_steps,
           "metrics": json.loads(metrics_file.read_text()) if metrics_file.is_file() else None,
           "val_images": float(trainer.callback_metrics.get("val/images", 0)),
           "last_ckpt": str(run_dir / "checkpoints" / "last.ckpt")}
    if trainer.is_global_zero and (run_dir / "metrics.csv").is_file():
        out["loss_curve"] = str(loss_curve(run_dir / "metrics.csv", run_dir / "loss_curve.png"))
    return out


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
@report_errors
def main(cfg: DictConfig) -> None:
    result = train(cfg)
    if result["metrics"] is None:
        log.info("done at step %d; no validation, no metrics (checkpoints in %s)", result["global_step"],
                 Path(cfg.run_dir) / "checkpoints")
    else:
        log.info("done at step %d; metrics in %s", result["global_step"], Path(cfg.run_dir) / METRICS_FILE)


if __name__ == "__main__":
    run(main)
