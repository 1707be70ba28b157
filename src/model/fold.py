"""A trained ``PoseNet`` folded for inference: the same maps, to float rounding, for less work.

Two rewrites, exact in real arithmetic, made once when a checkpoint is loaded for inference:

- BatchNorm (its running statistics) is folded into the convolution before it.
- A stage's 1x1 output convolution is folded into the first 3x3 convolution of each later stage that reads it,
  when the stage's tail is narrower than its output. A later stage reads ``cat(features, out(h))``; over the
  ``out`` channels its first convolution is ``conv3x3(W_out h + b_out)``, which is ``conv3x3`` with weights
  ``W3 W_out`` over the tail ``h``, plus the bias's term: ``conv3x3`` of a constant map, zero-padded, so
  constant inside and different along the border (a one-channel convolution of ones). For ``tiny`` (tails of
  96, 304 PAF channels) a stage reads 160 channels instead of 368 and the first PAF stage's output is never
  made: about a fifth of the network's FLOPs. Where a tail is wider than the output (the released
  network's 512), that stage's output is read as it is.

Only the last PAF and CM stages' outputs are computed: the output contract ``net.maps(net(x))``. Weights are
channels-last, the layout oneDNN convolves without reordering.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

from src.model.net import DenseBlock, PoseNet, Stage


def _fold_batch_norm(conv: nn.Conv2d, act: nn.Module) -> None:
    """``act`` = BatchNorm + PReLU: the BatchNorm moves into ``conv``'s weights and becomes an identity."""
    if isinstance(act, nn.Sequential) and isinstance(act[0], nn.BatchNorm2d):
        bn = act[0]
        conv.weight, conv.bias = fuse_conv_bn_weights(conv.weight, conv.bias, bn.running_mean, bn.running_var,
                                                      bn.eps, bn.weight, bn.bias)
        act[0] = nn.Identity()


def _fold_batch_norms(net: PoseNet) -> None:
    for module in net.modules():
        if isinstance(module, nn.Sequential):                       # backbone and adapter: conv, act, ...
            layers = list(module)
            for conv, act in zip(layers, layers[1:], strict=False):
                if isinstance(conv, nn.Conv2d):
                    _fold_batch_norm(conv, act)
        elif isinstance(module, DenseBlock):
            for conv, act in zip(module.convs, module.acts, strict=True):
                _fold_batch_norm(conv, act)
        elif isinstance(module, Stage):
            _fold_batch_norm(module.tail, module.tail_act)


class _Output:
    """A stage's tail activation ``h``, and its output ``stage.out(h)`` made once, when first asked for."""

    def __init__(self, h: torch.Tensor, stage: Stage):
        self.h, self.stage, self._output = h, stage, None

    def output(self) -> torch.Tensor:
        if self._output is None:
            self._output = self.stage.out(self.h)
        return self._output


class _FirstConv(nn.Module):
    """A stage's first 3x3 convolution over ``cat(features, earlier stages' outputs)``, called with
    ``(features, [_Output, ...])``: an earlier stage whose output convolution is folded in is read at its
    tail, the others at their output."""

    def __init__(self, conv: nn.Conv2d, sources: list[Stage]):
        super().__init__()
        weight = conv.weight.detach().double()
        at = conv.in_channels - sum(s.out.out_channels for s in sources)
        parts, edge, self.folded = [weight[:, :at]], torch.zeros_like(weight[:, :1]), []
        for s in sources:
            w = weight[:, at:at + s.out.out_channels]
            at += s.out.out_channels
            fold = s.tail.out_channels < s.out.out_channels
            self.folded.append(fold)
            if fold:
                parts.append(torch.einsum("ocij,ct->otij", w, s.out.weight.detach().double()[:, :, 0, 0]))
                edge += torch.einsum("ocij,c->oij", w, s.out.bias.detach().double())[:, None]
            else:
                parts.append(w)
        parts = torch.cat(parts, 1)
        self.conv = nn.Conv2d(parts.shape[1], conv.out_channels, 3, padding=1).to(conv.weight.device)
        self.conv.weight.data, self.conv.bias.data = parts.float(), conv.bias.detach().clone()
        self.register_buffer("edge", edge.float() if any(self.folded) else None)

    def forward(self, inputs: tuple[torch.Tensor, list[_Output]]) -> torch.Tensor:
        features, sources = inputs
        x = [s.h if fold else s.output() for s, fold in zip(sources, self.folded, strict=True)]
        y = self.conv(torch.cat([features, *x], 1))
        if self.edge is not None:
            y += F.conv2d(torch.ones_like(y[:1, :1]), self.edge.to(y.dtype), padding=1)  # shape-free: exports
        return y


class FoldedPoseNet(nn.Module):
    """``net``'s maps ``[B, K + 2P, H/8, W/8]`` (a copy of it, folded; ``net`` is left as it is), in eval mode
    on ``device``. A model for :class:`src.inference.Inference`."""

    def __init__(self, net: PoseNet, device: str | torch.device = "cpu"):
        super().__init__()
        net = copy.deepcopy(net).eval()
        _fold_batch_norms(net)
        self.layout = net.layout
        self.backbone, self.adapter = net.backbone, net.adapter
        self.paf_stages, self.cm_stages, self.reads = net.paf_stages, net.cm_stages, net.reads
        stages = [*net.paf_stages, *net.cm_stages]
        for stage, reads in zip(stages, self.reads, strict=True):
            if reads:
                stage.blocks[0].convs[0] = _FirstConv(stage.blocks[0].convs[0], [stages[i] for i in reads])
        self.to(device, memory_format=torch.channels_last).requires_grad_(False)

    @staticmethod
    def _tail(stage: Stage, x) -> _Output:
        return _Output(stage.tail_act(stage.tail(stage.blocks(x))), stage)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.adapter(self.backbone(x.contiguous(memory_format=torch.channels_last)))
        outs: list[_Output] = []
        for stage, reads in zip([*self.paf_stages, *self.cm_stages], self.reads, strict=True):
            outs.append(self._tail(stage, (f, [outs[i] for i in reads]) if reads else f))
        return torch.cat([outs[-1].output(), outs[len(self.paf_stages) - 1].output()], 1)   # as PoseNet.maps
