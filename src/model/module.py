"""The LightningModule: targets on the device when the loader did not make them, stage losses, the released
solver, non-finite-loss handling, and COCO-WholeBody validation (decode -> gather once -> evaluate).

Batch contract (datamodules/samples.py): ``image`` [B,3,S,S] (uint8 BGR, or float ``x / 256 - 0.5``),
``keypoints`` [B,P,135,3], ``labelled`` [B,135], ``ignore`` [B,S/8,S/8], and ``target``/``weight``
[B,439,S/8,S/8] when the loader made them (``data.targets_on: worker``); otherwise the datamodule's
``device_targets`` makes them here after the transfer. Validation batches add ``image_id``, ``source``,
``scale``/``offset`` (back to original-image pixels) and ``input_size``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf

from src.evaluation.validation import ValidationCollector, multiscale_maps
from src.model import solver
from src.model.loss import StageLoss

log = logging.getLogger(__name__)

METRICS_FILE = "last_metrics.json"  # in the run dir: the last validation's {part: {stat: value}}


class NonFiniteLossError(RuntimeError):
    """Too many non-finite losses in a row: the run stops, the last good checkpoint stays on disk."""


class PoseModule(L.LightningModule):
    """Trains a :class:`src.model.net.PoseNet` built from ``net`` (a Hydra node, instantiated here so that a
    checkpoint alone rebuilds the network)."""

    def __init__(self, net: dict, input_size: int, optimizer: dict, schedule: dict,
                 decoder: dict | None = None, loss: dict | None = None, channels_last: bool | None = None,
                 max_bad_steps: int = 20, val_images: int = 4, val_scales: list[float] | None = None):
        super().__init__()
        net, optimizer, schedule = _plain(net), _plain(optimizer), _plain(schedule)
        decoder, loss, val_scales = _plain(decoder or {}), _plain(loss or {}), _plain(val_scales or [1.0])
        self.save_hyperparameters()  # plain dicts: a checkpoint alone rebuilds the module
        if input_size % 8:
            raise ValueError(f"model.input_size must be a multiple of 8, got {input_size}")
        solver.check(optimizer, schedule)
        self.net = instantiate(net)
        self.loss = StageLoss(self.net.num_keypoints, self.net.num_pairs, **loss)
        self.bad_steps = 0    # non-finite losses skipped so far (kept in the checkpoint)
        self.bad_streak = 0   # ... of them in a row
        self.collector = ValidationCollector(decoder, val_images)
        self.last_metrics: dict | None = None  # {part: {stat: value}} of the last validation
        self.val_scales = [float(s) for s in val_scales]
        if min(self.val_scales) <= 0:
            raise ValueError(f"model.val_scales must be positive factors, got {self.val_scales}")

    # -- inputs -------------------------------------------------------------------------------------------
    @property
    def _channels_last(self) -> bool:
        flag = self.hparams.channels_last
        return self.device.type == "cuda" if flag is None else bool(flag)

    def _input(self, image: torch.Tensor) -> torch.Tensor:
        """uint8 BGR -> ``image / 256 - 0.5`` (the released normalisation); a float image is already so."""
        x = image.float() / 256.0 - 0.5 if image.dtype == torch.uint8 else image.float()
        return x.contiguous(memory_format=torch.channels_last) if self._channels_last else x

    def on_fit_start(self) -> None:
        if self._channels_last:
            self.net.to(memory_format=torch.channels_last)

    def on_after_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        """Targets on the device (``data.targets_on: device``) through the datamodule, which also counts
        the bad samples its workers skipped."""
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer else None
        if datamodule is not None and hasattr(datamodule, "device_targets"):
            with torch.no_grad():
                batch = datamodule.device_targets(batch)
        return batch

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """``[B,3,H,W]`` 0..255 -> the 439-channel output ``[B, K+2P, H/8, W/8]``."""
        return self.net.maps(self.net(self._input(image)))

    def _losses(self, batch: dict) -> tuple[dict[str, torch.Tensor], list[torch.Tensor]]:
        outs = self.net(self._input(batch["image"]))
        pafs, cms = self.net.split(outs)
        return self.loss(pafs, cms, batch["target"], batch["weight"]), outs

    # -- training -----------------------------------------------------------------------------------------
    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor | None:
        if "target" not in batch:
            raise ValueError("training batch without target/weight: set data.targets (conf/train.yaml does) "
                             "or data.targets_on=worker")
        saved = [b.detach().clone() for b in self.net.buffers()]  # BatchNorm running stats, if any
        losses, _ = self._losses(batch)
        if not self._finite(losses["total"]):
            with torch.no_grad():  # a non-finite forward must not leave NaN in the running statistics
                for buf, old in zip(self.net.buffers(), saved, strict=True):
                    buf.copy_(old)
            return None  # Lightning skips backward and the optimiser step (Adam ignores params without grad)
        self.log("train/loss", losses["total"], prog_bar=True)
        self.log_dict({f"train/loss/{k}": v for k, v in losses.items() if k != "total"})
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is not None and hasattr(datamodule, "skipped_samples"):
            self.log("train/skipped_samples", float(datamodule.skipped_samples))
        return losses["total"]

    def _finite(self, total: torch.Tensor) -> bool:
        """Count a non-finite loss; all ranks agree (one tiny collective) so they skip the same step."""
        ok = torch.isfinite(total.detach()).float()
        if self.trainer.world_size > 1:
            ok = self.all_gather(ok).min()
        if ok.item() == 1.0:
            self.bad_streak = 0
            return True
        self.bad_steps += 1
        self.bad_streak += 1
        self.log("train/nonfinite_steps", float(self.bad_steps))
        log.warning("non-finite loss at step %d: step skipped (%d in a row, %d in total)",
                    self.global_step, self.bad_streak, self.bad_steps)
        if self.bad_streak >= self.hparams.max_bad_steps:
            raise NonFiniteLossError(
                f"{self.bad_streak} non-finite losses in a row at step {self.global_step} "
                f"(limit model.max_bad_steps={self.hparams.max_bad_steps}); training stopped, the last good "
                "checkpoint is kept: check the data, lower model.optimizer.lr, or set "
                "trainer.gradient_clip_val")
        return False

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["bad_steps"] = self.bad_steps

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.bad_steps = checkpoint.get("bad_steps", 0)

    def configure_optimizers(self):
        opt = solver.build_optimizer(self.net, **self.hparams.optimizer)
        sched = solver.build_schedule(opt, **self.hparams.schedule)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # -- validation ---------------------------------------------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        self.collector.reset()

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        """Decode this rank's images at every factor of ``val_scales`` (maps averaged, spec §7.2); the val
        loss at scale 1. No collectives here (ranks may see different batch counts)."""
        maps = {}
        if "target" in batch:
            losses, outs = self._losses(batch)
            self.log("val/loss", losses["total"], on_epoch=True, batch_size=batch["image"].shape[0])
            maps[1.0] = self.net.maps(outs).float()
        others = [s for s in self.val_scales if s not in maps]
        maps.update(zip(others, multiscale_maps(self.net, self._input(batch["image"]), others), strict=True))
        self.collector.add(batch, [maps[s] for s in self.val_scales], self.val_scales)

    def on_validation_epoch_end(self) -> None:
        """Gather every rank's records once, evaluate the six parts, log AP/AR, write pictures.

        The first val source is the headline (``val/<part>/<stat>``, what best.ckpt tracks); any other source
        logs as ``val/<source>/<part>/<stat>``.
        """
        gts = getattr(self.trainer.datamodule, "val_gt", None) or {}
        results = self.collector.evaluate(gts)
        for i, (source, (metrics, count)) in enumerate(results.items()):
            prefix = "val" if i == 0 else f"val/{source}"
            self.log_dict({f"{prefix}/{part}/{stat}": v for part, stats in metrics.items()
                           for stat, v in stats.items() if stat in ("AP", "AR")})
            self.log(f"{prefix}/images", float(count))
            if i == 0:
                self.log("val/step", float(self.global_step))
                self.last_metrics = metrics
        if self.trainer.is_global_zero and not self.trainer.sanity_checking:
            run_dir = Path(self.trainer.default_root_dir)
            if self.last_metrics is not None:  # also read back by train() after ddp_spawn
                (run_dir / METRICS_FILE).write_text(json.dumps(self.last_metrics, indent=2) + "\n")
            self.collector.write_pictures(run_dir / "pictures", self.global_step, self.loggers)


def _plain(cfg):
    """A Hydra node (DictConfig) -> plain resolved containers, so hyper-parameters pickle without Hydra."""
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig | ListConfig) else cfg
