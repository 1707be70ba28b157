"""The LightningModule: stage losses, the released solver, non-finite-loss handling, and COCO-WholeBody
validation (``src.inference`` decodes -> gather once -> evaluate).

It only reads the batch contract of ``datamodules/samples.py``: training uses ``image`` [B,3,S,S] (uint8 BGR,
or float ``x / 256 - 0.5``), ``target``/``weight`` [B,439,S/8,S/8] and ``skipped``; validation adds
``image_id``, ``source``, ``gt``, ``scale``/``offset`` (back to original-image pixels) and ``input_size``.
Any loader that delivers these trains it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf

from src.core import checkpoint
from src.core.geometry import normalise
from src.decoder.decode import decoder_for
from src.evaluation.validation import ValidationCollector
from src.inference import Inference, NetworkModel
from src.training import solver
from src.training.loss import StageLoss

log = logging.getLogger(__name__)

METRICS_FILE = "last_metrics.json"  # in the run dir: the last validation's {part: {stat: value}}
SOURCES_FILE = "last_metrics_per_source.json"  # {source: {part: {stat: value}}} when there are several


class NonFiniteLossError(RuntimeError):
    """Too many non-finite losses in a row: the run stops, the last good checkpoint stays on disk."""


class PoseModule(L.LightningModule):
    """Trains a :class:`src.model.net.PoseNet` built from ``net`` (a Hydra node, instantiated here so that a
    checkpoint alone rebuilds the network)."""

    def __init__(self, net: dict, input_size: int, optimizer: dict, schedule: dict,
                 decoder: dict | None = None, loss: dict | None = None, channels_last: bool | None = None,
                 max_bad_steps: int = 20, val_images: int = 4, val_scales: list[float] | None = None,
                 val_flip: bool = False,
                 init_from: str | None = None, init_strict: bool = True, compile: bool = False,
                 init_names: dict | None = None):
        super().__init__()
        net, optimizer, schedule = _plain(net), _plain(optimizer), _plain(schedule)
        decoder, loss, val_scales = _plain(decoder or {}), _plain(loss or {}), _plain(val_scales or [1.0])
        init_names = _plain(init_names or {})  # {checkpoint's keypoint name: this run's}, for init_from
        self.save_hyperparameters()  # plain dicts: a checkpoint alone rebuilds the module
        if input_size % 8:
            raise ValueError(f"model.input_size must be a multiple of 8, got {input_size}")
        solver.check(optimizer, schedule)
        if init_from:  # the checkpoint's weights replace the backbone initialisation: skip it (no download)
            net = {**net, "backbone_init": "none", "backbone_weights": None}
        self.net = instantiate(net)
        if init_from:  # weights only: optimiser, schedule and step start fresh (unlike ckpt_path)
            checkpoint.init_weights(self.net, init_from, init_strict, init_names)  # by name across layouts
        self.loss = StageLoss(self.net.layout, **loss)
        self.bad_steps = 0    # non-finite losses skipped so far (kept in the checkpoint)
        self.bad_streak = 0   # ... of them in a row
        self.skipped_samples = 0  # bad samples the loader dropped, as the batches report them (this rank)
        self.val_scales = [float(s) for s in val_scales]
        if min(self.val_scales) <= 0:
            raise ValueError(f"model.val_scales must be positive factors, got {self.val_scales}")
        decoder = decoder_for(decoder, self.net.layout)
        self.inference = Inference(NetworkModel(self.net), decoder, self.val_scales, flip=val_flip)
        self.collector = ValidationCollector(val_images, self.net.layout)
        self.last_metrics: dict | None = None  # {part: {stat: value}} of the last validation
        self._train_net = None  # torch.compile(self.net) when ``compile``: training forward only

    # -- inputs -------------------------------------------------------------------------------------------
    @property
    def _channels_last(self) -> bool:
        flag = self.hparams.channels_last
        return self.device.type == "cuda" if flag is None else bool(flag)

    def _input(self, image: torch.Tensor) -> torch.Tensor:
        x = normalise(image)
        return x.contiguous(memory_format=torch.channels_last) if self._channels_last else x

    def on_fit_start(self) -> None:
        if self._channels_last:
            self.net.to(memory_format=torch.channels_last)
        self.inference.model = NetworkModel(self.net, self._channels_last)
        if self.hparams.get("compile") and self._train_net is None:
            # kept outside the module tree: parameters, state_dict keys and checkpoints stay those of self.net
            object.__setattr__(self, "_train_net", torch.compile(self.net))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """``[B,3,H,W]`` 0..255 -> the 439-channel output ``[B, K+2P, H/8, W/8]``."""
        return self.net.maps(self.net(self._input(image)))

    def _losses(self, batch: dict) -> tuple[dict[str, torch.Tensor], list[torch.Tensor]]:
        net = self._train_net if self._train_net is not None and self.training else self.net
        outs = net(self._input(batch["image"]))
        pafs, cms = self.net.split(outs)
        return self.loss(pafs, cms, batch["target"], batch["weight"]), outs

    # -- training -----------------------------------------------------------------------------------------
    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor | None:
        if "target" not in batch:
            raise ValueError("training batch without target/weight: the datamodule adds them "
                             "(set data.targets; conf/train.yaml does)")
        if batch["target"].shape[1] != self.net.num_outputs:
            raise ValueError(f"targets have {batch['target'].shape[1]} channels, the network "
                             f"{self.net.num_outputs} (layout {self.net.layout.name}): the targets and the "
                             "network must take the run's one `layout`")
        saved = [b.detach().clone() for b in self.net.buffers()]  # BatchNorm running stats, if any
        losses, _ = self._losses(batch)
        if not self._finite(losses["total"]):
            with torch.no_grad():  # a non-finite forward must not leave NaN in the running statistics
                for buf, old in zip(self.net.buffers(), saved, strict=True):
                    buf.copy_(old)
            return None  # Lightning skips backward and the optimiser step (Adam ignores params without grad)
        self.log("train/loss", losses["total"], prog_bar=True)
        self.log_dict({f"train/loss/{k}": v for k, v in losses.items() if k != "total"})
        if "skipped" in batch:
            self.skipped_samples += int(batch["skipped"])
            self.log("train/skipped_samples", float(self.skipped_samples))
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
        loss at scale 1, whose maps are reused. No collectives here (ranks may see different batch counts)."""
        maps = {}
        if "target" in batch:
            losses, outs = self._losses(batch)
            self.log("val/loss", losses["total"], on_epoch=True, batch_size=batch["image"].shape[0])
            if not self.inference.flip:  # with flip, scale 1 needs the mirrored pass as well
                maps[1.0] = self.net.maps(outs).float()
        others = [s for s in self.val_scales if s not in maps]
        maps.update(zip(others, self.inference.maps(batch["image"], others), strict=True))
        per_scale = [maps[s] for s in self.val_scales]
        people = self.inference.decode(per_scale, tuple(batch["image"].shape[-2:]), batch["scale"],
                                       batch["offset"])
        self.collector.add(batch, people, maps[1.0] if 1.0 in self.val_scales else per_scale[0])

    def on_validation_epoch_end(self) -> None:
        """Gather every rank's records once, evaluate each val source, log AP/AR, write pictures.

        Every source logs ``val/<source>/<part>/<stat>`` for the parts it labels (a face set is scored on
        faces only, a right-hand set on right hands); the first source is also the headline,
        ``val/<part>/<stat>``, and ``val/AP`` is its main AP (what ``callbacks.best.monitor`` tracks):
        whole-body where the source is scored on it, else its first part (``body`` for a body-only set,
        ``keypoints`` for a plain layout), so every validation produces the metric the best checkpoint
        follows.
        """
        results = self.collector.evaluate()
        for i, (source, (metrics, count, labelled)) in enumerate(results.items()):
            scored = {part: metrics[part] for part in labelled}
            for prefix in (f"val/{source}", "val") if i == 0 else (f"val/{source}",):
                self.log_dict({f"{prefix}/{part}/{stat}": v for part, stats in scored.items()
                               for stat, v in stats.items() if stat in ("AP", "AR")})
                self.log(f"{prefix}/images", float(count))
            if i == 0:
                self.log("val/step", float(self.global_step))
                self.last_metrics = metrics
                if scored:
                    main = "wholebody" if "wholebody" in scored else next(iter(scored))
                    self.log("val/AP", scored[main]["AP"])
        if self.trainer.is_global_zero and not self.trainer.sanity_checking:
            run_dir = Path(self.trainer.default_root_dir)
            if self.last_metrics is not None:  # also read back by train() after ddp_spawn
                (run_dir / METRICS_FILE).write_text(json.dumps(self.last_metrics, indent=2) + "\n")
            if len(results) > 1:
                per_source = {source: {part: metrics[part] for part in labelled}
                              for source, (metrics, _, labelled) in results.items()}
                (run_dir / SOURCES_FILE).write_text(json.dumps(per_source, indent=2) + "\n")
            self.collector.write_pictures(run_dir / "pictures", self.global_step, self.loggers)

def _plain(cfg):
    """A Hydra node (DictConfig) -> plain resolved containers, so hyper-parameters pickle without Hydra."""
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig | ListConfig) else cfg
