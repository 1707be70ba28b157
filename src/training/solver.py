"""The released solver (spec §6): Adam with Caffe's per-layer learning-rate and decay multipliers, multistep.

Caffe multipliers of the released BODY_135 net: backbone and adapter convs lr x1 (bias x2); every stage conv
and PReLU lr x4 (bias x8); weight decay 5e-4 on conv weights only. Caffe's decay is L2 added to the gradient,
which is ``torch.optim.Adam(weight_decay=...)`` (not AdamW). PReLU slopes get no decay here (Caffe would decay
them: decay_mult defaults to 1) because shrinking a slope towards 0 turns PReLU into ReLU, which is not a
regulariser of the weights; nor do BatchNorm scales and shifts (``tiny`` only).
"""

from __future__ import annotations

import torch
from torch import nn


def param_groups(net: nn.Module, lr: float, weight_decay: float, stage_lr_mult: float = 4.0,
                 bias_lr_mult: float = 2.0) -> list[dict]:
    """Adam groups: {backbone+adapter, stages} x {conv weights, biases, PReLU slopes, BatchNorm affine}."""
    stage_ids = {id(p) for m in net.stage_modules() for p in m.parameters()}
    groups: dict[tuple[str, str], list[nn.Parameter]] = {}
    for module in net.modules():
        for name, p in module.named_parameters(recurse=False):
            part = "stages" if id(p) in stage_ids else "backbone"
            if isinstance(module, nn.PReLU | nn.BatchNorm2d):
                kind = "prelu" if isinstance(module, nn.PReLU) else "norm"
            else:
                kind = "bias" if name == "bias" else "weight"
            groups.setdefault((part, kind), []).append(p)
    out = []
    for (part, kind), params in sorted(groups.items()):
        mult = stage_lr_mult if part == "stages" else 1.0
        if kind == "bias":
            mult *= bias_lr_mult
        out.append({"params": params, "name": f"{part}/{kind}", "lr": lr * mult,
                    "weight_decay": weight_decay if kind == "weight" else 0.0})
    n_grouped, n_net = sum(len(g["params"]) for g in out), len(list(net.parameters()))
    if n_grouped != n_net:
        raise RuntimeError(f"param_groups: {n_grouped} parameters grouped, the net has {n_net}")
    return out


def check(optimizer: dict, schedule: dict) -> None:
    """Fail at construction, naming the key, rather than at the first step."""
    for key in ("lr", "weight_decay", "stage_lr_mult", "bias_lr_mult"):
        value = optimizer.get(key, 0.0)
        if not isinstance(value, int | float) or value < 0 or (key == "lr" and value == 0):
            raise ValueError(f"model.optimizer.{key} must be a number {'> 0' if key == 'lr' else '>= 0'}, "
                             f"got {value!r}")
    milestones = list(schedule.get("milestones", []))
    if sorted(milestones) != milestones or not all(isinstance(m, int) and m > 0 for m in milestones):
        raise ValueError(f"model.schedule.milestones must be increasing positive step counts, "
                         f"got {milestones}")


def build_optimizer(net: nn.Module, lr: float = 3e-5, betas: tuple[float, float] = (0.9, 0.999),
                    weight_decay: float = 5e-4, stage_lr_mult: float = 4.0,
                    bias_lr_mult: float = 2.0) -> torch.optim.Adam:
    return torch.optim.Adam(param_groups(net, lr, weight_decay, stage_lr_mult, bias_lr_mult),
                            lr=lr, betas=tuple(betas))


def build_schedule(optimizer: torch.optim.Optimizer, milestones: list[int], gamma: float = 0.5
                   ) -> torch.optim.lr_scheduler.MultiStepLR:
    """Learning rate x ``gamma`` at each milestone, counted in optimiser steps (iterations, as in Caffe)."""
    if sorted(milestones) != list(milestones):
        raise ValueError(f"model.schedule.milestones must be increasing, got {list(milestones)}")
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(milestones), gamma=gamma)
