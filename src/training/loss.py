"""Masked L2 loss at every stage, returned by name: per stage and per keypoint group.

The released Caffe EuclideanLoss on ``W * pred`` and ``W * gt`` (spec §3.5)::

    loss_stage = sum((W * (pred - gt)) ** 2) / (2 * N)        N = images in the (per-GPU) batch

so a cell's effective weight is W squared, the weighting the W of ``src/targets.py`` was tuned for. Every
stage has weight 1 and the total is their sum. ``peak_weight`` multiplies W by ``1 + (peak_weight - 1) *
|target|`` (Gaussian and PAF cells weigh more than background), ``cm_peak_weight`` sets it apart for the
heatmaps (None: the same) and ``cm_weight`` multiplies every heatmap stage's loss; their defaults (1, None, 1)
are the released loss (docs/training.md, "Loss", says which run changes them and why).

Names: ``paf0 .. paf{T-1}``, ``cm0 ..`` per stage; per group of the layout, summed over stages (their sum
equals ``total``): BODY_135's ``body`` (body + MPII), ``foot``, ``hands``, ``face``; another layout's groups
by their own names (``keypoints`` for a plain keypoint set). A PAF channel belongs to the group of its
higher-indexed end (wrist->thumb is a hand limb, ankle->toe a foot limb, nose->face point a face limb).
A layout's ``joint_weights`` scale each heatmap channel's loss (MMPose's per-joint weights).
"""

from __future__ import annotations

import torch
from torch import nn

from src.core.skeleton import Layout

LOG_GROUPS = {"body": "body", "mpii": "body", "foot": "foot", "lhand": "hands", "rhand": "hands",
              "face": "face"}


def channel_groups(layout: Layout) -> dict[str, list[int]]:
    """Output channels per logged group of ``layout`` (BODY_135's groups merged as ``LOG_GROUPS`` says)."""
    name = lambda g: LOG_GROUPS.get(g, g)  # noqa: E731
    k = layout.num_keypoints
    out: dict[str, list[int]] = {g: [] for g in dict.fromkeys(name(g) for g in layout.groups)}
    for i in range(k):
        out[name(layout.group_of(i))].append(i)
    for p, (a, b) in enumerate(layout.pairs):
        out[name(layout.group_of(max(a, b)))] += [k + 2 * p, k + 2 * p + 1]
    return out


class StageLoss(nn.Module):
    """Caffe-style masked L2 summed over stages; see the module docstring for the formula and names."""

    def __init__(self, layout="body135", peak_weight: float = 1.0, cm_peak_weight: float | None = None,
                 cm_weight: float = 1.0):
        super().__init__()
        layout = Layout.of(layout)
        self.num_keypoints = layout.num_keypoints
        self.peak_weight, self.cm_weight = peak_weight, cm_weight
        self.cm_peak_weight = peak_weight if cm_peak_weight is None else cm_peak_weight
        # per heatmap channel, a plain attribute like ``member`` (no buffer: see below); None = all 1
        self.joint_weights = None if layout.joint_weights is None else torch.tensor(layout.joint_weights)
        groups = channel_groups(layout)
        self.group_names = list(groups)
        member = torch.zeros(layout.num_channels, len(groups))
        for j, idx in enumerate(groups.values()):
            member[idx, j] = 1.0
        # (C, G) channel -> group. A plain attribute, not a buffer: DDP broadcasts buffers in every forward,
        # a collective that would deadlock validation where ranks see different numbers of batches.
        self.member = member

    def forward(self, pafs: list[torch.Tensor], cms: list[torch.Tensor], target: torch.Tensor,
                weight: torch.Tensor) -> dict[str, torch.Tensor]:
        """``pafs``/``cms``: stage outputs; ``target``/``weight``: ``[B, K + 2P, h, w]``. -> named losses."""
        k = self.num_keypoints
        n = target.shape[0]
        per_channel = torch.zeros(target.shape[1], device=target.device, dtype=torch.float32)
        losses: dict[str, torch.Tensor] = {}
        for name, outs, sl, peak, scale in (("paf", pafs, slice(k, None), self.peak_weight, 1.0),
                                            ("cm", cms, slice(0, k), self.cm_peak_weight, self.cm_weight)):
            for t, pred in enumerate(outs):
                if pred.shape[1:] != target[:, sl].shape[1:]:
                    raise ValueError(f"stage {name}{t} output {tuple(pred.shape)} does not match the target "
                                     f"channels {tuple(target[:, sl].shape)}")
                w = weight[:, sl].float()
                if peak != 1.0:
                    w = w * (1 + (peak - 1) * target[:, sl].abs().float())
                err = (w * (pred.float() - target[:, sl].float())).square().sum((0, 2, 3))  # (C,)
                if name == "cm" and self.joint_weights is not None:
                    err = err * self.joint_weights.to(err.device)
                sq = scale * err / (2 * n)
                losses[f"{name}{t}"] = sq.sum()
                per_channel[sl] += sq.detach()  # groups are for logging only
        groups = per_channel @ self.member.to(per_channel.device)
        for name, value in zip(self.group_names, groups, strict=True):
            losses[name] = value
        losses["total"] = sum(losses[f"paf{t}"] for t in range(len(pafs))) + sum(
            losses[f"cm{t}"] for t in range(len(cms)))
        return losses
