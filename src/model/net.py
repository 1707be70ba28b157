"""The whole-body network: a stride-8 backbone, the CPM adapter, PAF stages, then confidence-map stages.

Facts: shared/docs/openpose_body135_spec.md §5. Input ``[B, 3, H, W]`` (H, W multiples of 8, normalised as
``image / 256 - 0.5`` like the released net); every stage returns ``[B, C, H/8, W/8]``:

- PAF stage 0 reads the adapter features F; PAF stage t > 0 reads concat(F, PAF_{t-1});
- CM stage 0 reads concat(F, final PAF); CM stage s > 0 reads concat(F, CM_{s-1}, final PAF) (BODY_25 layout);
- every stage output is kept so the loss can supervise each (intermediate supervision).

Convs start xavier with zero bias (released); ``zero_outputs`` starts each stage's output conv at zero
instead, so training begins at the all-zero prediction rather than at about 6x its loss (used by ``smoke``).

The output contract of the whole project is ``concat(final CM, final PAF)`` = ``[B, K + 2P, H/8, W/8]``
(439 channels for BODY_135), built by :func:`PoseNet.maps`.

Stage configuration is a list of ``[blocks, width, tail]`` triples: ``blocks`` dense blocks of ``width``
channels, then a 1x1 conv to ``tail`` channels + PReLU, then the 1x1 output conv (no activation).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from src.core import checkpoint
from src.core.skeleton import Layout
from src.model import pretrained

log = logging.getLogger(__name__)

PRELU_INIT = 0.25  # Caffe PReLU default (spec §5.1)


def _prelu(channels: int) -> nn.PReLU:
    return nn.PReLU(channels, init=PRELU_INIT)


def _act(channels: int, batch_norm: bool) -> nn.Module:
    """PReLU, after a BatchNorm when ``batch_norm`` (OpenPose's sBatchNorm switch; off in the released net,
    on in ``tiny`` where it lets a from-scratch CPU run use a high learning rate)."""
    return nn.Sequential(nn.BatchNorm2d(channels), _prelu(channels)) if batch_norm else _prelu(channels)


class DenseBlock(nn.Module):
    """Three 3x3 conv + PReLU in sequence; their outputs concatenated (3 x width channels)."""

    def __init__(self, in_channels: int, width: int, batch_norm: bool = False):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(c, width, 3, padding=1) for c in (in_channels, width, width))
        self.acts = nn.ModuleList(_act(width, batch_norm) for _ in range(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = []
        for conv, act in zip(self.convs, self.acts, strict=True):
            x = act(conv(x))
            outs.append(x)
        return torch.cat(outs, 1)  # (B, 3*width, h, w)


class Stage(nn.Module):
    """``blocks`` dense blocks of ``width``, 1x1 conv to ``tail`` + PReLU, 1x1 conv to ``out_channels``."""

    def __init__(self, in_channels: int, out_channels: int, blocks: int, width: int, tail: int,
                 batch_norm: bool = False):
        super().__init__()
        if blocks < 1 or width < 1 or tail < 1:
            raise ValueError(f"stage needs blocks, width, tail >= 1, got [{blocks}, {width}, {tail}]")
        self.blocks = nn.Sequential(*[DenseBlock(in_channels if i == 0 else 3 * width, width, batch_norm)
                                      for i in range(blocks)])
        self.tail = nn.Conv2d(3 * width, tail, 1)
        self.tail_act = _act(tail, batch_norm)
        self.out = nn.Conv2d(tail, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.tail_act(self.tail(self.blocks(x))))


class VGG19(nn.Module):
    """VGG-19's first 10 convolutions (conv1_1 ... conv4_2), stride 8, 512 channels, PReLU on conv4_2.

    ``features`` keeps torchvision's indices (convs at 0, 2, 5, 7, 10, 12, 14, 16, 19, 21) so an ImageNet
    state dict loads by key copy (:func:`load_backbone`).
    """

    out_channels = 512

    def __init__(self):
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for block, (cout, n) in enumerate([(64, 2), (128, 2), (256, 4), (512, 2)]):
            for _ in range(n):
                layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True)]
                cin = cout
            if block < 3:
                layers.append(nn.MaxPool2d(2, 2))
        layers[-1] = _prelu(512)  # conv4_2 uses PReLU in the released net
        self.features = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


class StridedStem(nn.Module):
    """A cheap stride-8 backbone for CPU runs: three stride-2 3x3 convs, then ``extra`` 3x3 convs at stride 8.

    Almost all compute happens at stride 8 where the stages work anyway; the full-resolution layer has only
    ``channels[0]`` outputs.
    """

    def __init__(self, channels: tuple[int, int, int] = (16, 32, 64), extra: int = 1,
                 batch_norm: bool = False):
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for cout in channels:
            layers += [nn.Conv2d(cin, cout, 3, stride=2, padding=1), _act(cout, batch_norm)]
            cin = cout
        for _ in range(extra):
            layers += [nn.Conv2d(cin, cin, 3, padding=1), _act(cin, batch_norm)]
        self.features = nn.Sequential(*layers)
        self.out_channels = cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


WIDTH_RULES = ("released", "linear")


def apply_width_rule(paf_stages: list[list[int]], rule: str | None) -> list[list[int]]:
    """The PAF stages with the middle stages' widths set from the first and last (paper Table 1 prints only
    a width range "first-last"): ``released`` every stage but the last takes the first width (the released
    BODY_135 pattern 128, 128, 128, 256); ``linear`` a ramp from first to last, rounded to multiples of 8;
    ``None`` the stages as listed. Blocks and tails are kept."""
    if rule is None:
        return [list(s) for s in paf_stages]
    if rule not in WIDTH_RULES:
        raise ValueError(f"model.net.width_rule must be one of {list(WIDTH_RULES)} or null, got {rule!r}")
    n, first, last = len(paf_stages), int(paf_stages[0][1]), int(paf_stages[-1][1])
    out = []
    for t, (blocks, width, tail) in enumerate(paf_stages):
        if 0 < t < n - 1:
            width = first if rule == "released" else int((first + (last - first) * t / (n - 1)) / 8 + 0.5) * 8
        out.append([int(blocks), int(width), int(tail)])
    return out


def stage_reads(paf_stages: int, cm_stages: int) -> list[tuple[int, ...]]:
    """For each stage, PAF stages then CM stages, the earlier stages whose outputs it reads after the
    features, in order (the module docstring's wiring): PAF stage t the PAF stage before it; the first CM
    stage the final PAF stage; a later CM stage the CM stage before it, then the final PAF stage."""
    final_paf = paf_stages - 1
    return ([() if t == 0 else (t - 1,) for t in range(paf_stages)]
            + [(final_paf,) if s == 0 else (paf_stages + s - 1, final_paf) for s in range(cm_stages)])


class PoseNet(nn.Module):
    """Backbone -> adapter (3x3 convs + PReLU) -> PAF stages -> CM stages; see the module docstring."""

    def __init__(self, backbone: nn.Module, adapter: list[int], paf_stages: list[list[int]],
                 cm_stages: list[list[int]], layout="body135",
                 backbone_init: str | None = None, batch_norm: bool = False, zero_outputs: bool = False,
                 backbone_weights: str | None = None, width_rule: str | None = None):
        super().__init__()
        if not paf_stages or not cm_stages:
            raise ValueError("need at least one PAF stage and one CM stage")
        paf_stages = apply_width_rule(paf_stages, width_rule)  # Table 1 presets: middle widths from a rule
        self.layout = Layout.of(layout)  # K heatmaps and P PAF pairs: the output channels
        num_keypoints, num_pairs = self.layout.num_keypoints, self.layout.num_pairs
        self.backbone = backbone
        convs: list[nn.Module] = []
        cin = backbone.out_channels
        for cout in adapter:
            convs += [nn.Conv2d(cin, cout, 3, padding=1), _act(cout, batch_norm)]
            cin = cout
        self.adapter = nn.Sequential(*convs)
        self.reads = stage_reads(len(paf_stages), len(cm_stages))
        outputs = [2 * num_pairs] * len(paf_stages) + [num_keypoints] * len(cm_stages)
        stages = [Stage(cin + sum(outputs[i] for i in reads), out, *spec, batch_norm=batch_norm)
                  for reads, out, spec in zip(self.reads, outputs, [*paf_stages, *cm_stages], strict=True)]
        self.paf_stages = nn.ModuleList(stages[:len(paf_stages)])
        self.cm_stages = nn.ModuleList(stages[len(paf_stages):])
        self.apply(_init)
        if zero_outputs:  # every stage starts at the all-zero prediction instead of ~6x its loss
            for stage in [*self.paf_stages, *self.cm_stages]:
                nn.init.zeros_(stage.out.weight)
        if backbone_weights:  # deprecated name of backbone_init=FILE
            log.warning("model.net.backbone_weights is deprecated: use model.net.backbone_init=%s "
                        "(it replaces backbone_init=%s here)", backbone_weights, backbone_init)
            backbone_init = str(backbone_weights)
        if any(p.is_meta for p in self.backbone.parameters()):
            log.info("backbone: meta device (sizes only), backbone_init=%s not loaded", backbone_init)
        else:
            init_backbone(self.backbone, backbone_init)

    @property
    def num_keypoints(self) -> int:
        return self.layout.num_keypoints

    @property
    def num_pairs(self) -> int:
        return self.layout.num_pairs

    @property
    def num_outputs(self) -> int:
        return self.layout.num_channels

    def stage_modules(self) -> list[nn.Module]:
        """Modules trained with the stage learning-rate multiplier (spec §6: Mconv* x4)."""
        return [self.paf_stages, self.cm_stages]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every stage's output, PAF stages first then CM stages, each ``[B, C, H/8, W/8]``."""
        f = self.adapter(self.backbone(x))
        outs: list[torch.Tensor] = []
        for stage, reads in zip([*self.paf_stages, *self.cm_stages], self.reads, strict=True):
            outs.append(stage(torch.cat([f, *(outs[i] for i in reads)], 1) if reads else f))
        return outs

    def maps(self, outs: list[torch.Tensor]) -> torch.Tensor:
        """The output contract: concat(final CM, final PAF) -> ``[B, K + 2P, H/8, W/8]``."""
        return torch.cat([outs[-1], outs[len(self.paf_stages) - 1]], 1)

    def split(self, outs: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Stage outputs as (PAF stages, CM stages)."""
        n = len(self.paf_stages)
        return outs[:n], outs[n:]


def _init(m: nn.Module) -> None:
    """Xavier weights and zero bias for every conv (spec §5.1); PReLU keeps its 0.25."""
    if isinstance(m, nn.Conv2d):
        nn.init.xavier_uniform_(m.weight)
        nn.init.zeros_(m.bias)


def init_backbone(backbone: nn.Module, spec: str | None) -> None:
    """``spec``: ``imagenet`` (torchvision's VGG-19, downloaded once, hash-checked), ``caffe:PATH`` (the
    released init ``VGG_ILSVRC_19_layers.caffemodel``), a checkpoint or state-dict path
    (:func:`load_backbone`), or ``none``/null (random). Published weights are folded into this network's
    input (``pretrained.py``)."""
    if spec is None or str(spec).lower() in ("", "none", "null", "random"):
        log.info("backbone: random initialisation (backbone_init none)")
        return
    spec = str(spec)
    if spec == "imagenet" or spec.startswith("caffe:"):
        if not isinstance(backbone, VGG19):
            raise ValueError(f"backbone_init={spec}: only the VGG19 backbone has published weights, this is "
                             f"a {type(backbone).__name__} (use backbone_init=none or a file)")
        _copy_backbone(backbone, pretrained.backbone_state(spec, backbone.features), spec)
    else:
        load_backbone(backbone, spec)


def load_backbone(backbone: nn.Module, path: str | Path) -> None:
    """Copy ``features.N.*`` tensors from a torchvision VGG-19 state dict or an earlier checkpoint.

    Accepts a plain state dict or a Lightning checkpoint (``state_dict`` inside); any prefix before
    ``features.`` is dropped (``net.backbone.features.0.weight`` -> ``features.0.weight``). Keys the backbone
    does not have (the VGG classifier) are ignored; a shape mismatch or a backbone conv left unfilled is an
    error naming the key.
    """
    ckpt = checkpoint.read(path, "backbone_init")
    _copy_backbone(backbone, checkpoint.strip_prefix(ckpt.get("state_dict", ckpt), "features.", path), path)


def _copy_backbone(backbone: nn.Module, state: dict[str, torch.Tensor], path: str | Path) -> None:
    own = backbone.state_dict()
    found = {}
    for name, value in state.items():
        if name in own:
            if own[name].shape != value.shape:
                raise ValueError(f"backbone_init {path}: {name} has shape {tuple(value.shape)}, "
                                 f"the backbone expects {tuple(own[name].shape)}")
            found[name] = value
    missing = [k for k, v in own.items() if k not in found and v.dim() == 4]
    if missing:
        raise ValueError(f"backbone_init {path}: no tensor for {missing[0]} "
                         f"({len(missing)} convs missing)")
    backbone.load_state_dict(found, strict=False)
    log.info("backbone: %d tensors loaded from %s", len(found), path)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
