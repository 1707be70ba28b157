"""The one checkpoint reader: every file of weights the project is given is opened here.

A file is a Lightning checkpoint of :class:`src.training.module.PoseModule` (``state_dict`` with ``net.``
keys, ``hyper_parameters.net`` = the network's Hydra node, ``global_step``) or a plain state dict of the
network or of a backbone. Tensor names are read relative to an anchor (``backbone.`` for a whole network,
``features.`` for a VGG backbone), so any prefix before it (``net.``, ``model.``, ``module.``) is dropped.

Files are read with ``torch.load(weights_only=True)``: tensors and plain values only, so a checkpoint from
elsewhere cannot run code while it is read. One that needs more (pickled classes or functions) is refused
with :class:`CheckpointError`; ``trust_checkpoint=true`` on train/evaluate/export/predict (:func:`trusted`)
reads it with the full unpickler, for files whose origin the user vouches for.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import re
import zipfile
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from src.core.skeleton import BODY_135, BODY_FOOT, Layout

log = logging.getLogger(__name__)

RENAMED_TARGETS = {"src.model.": "src.model.net."}
"""Network classes saved before the network moved into ``src/model/net.py``: old ``_target_`` -> new."""


TRUST_HINT = "trust_checkpoint=true"
_TRUST: contextvars.ContextVar[bool] = contextvars.ContextVar("trust_checkpoint", default=False)


class CheckpointError(ValueError):
    """A checkpoint that cannot be read: not a torch.save zip, truncated, foreign, or refused as unsafe."""


@contextlib.contextmanager
def trusted(flag: bool = True):
    """Within the block, checkpoints are read with the full unpickler (``trust_checkpoint=true``): only for
    files from a trusted source, since unpickling can run arbitrary code."""
    token = _TRUST.set(bool(flag))
    try:
        yield
    finally:
        _TRUST.reset(token)


def trusting() -> bool:
    """Whether checkpoints are read with the full unpickler here (inside :func:`trusted`)."""
    return _TRUST.get()


def read(path: str | Path, what: str = "ckpt_path") -> dict:
    """The checkpoint at ``path`` as a dict (CPU tensors), read weights-only unless :func:`trusted`; one-line
    errors naming the setting ``what`` and the path when it is absent, not a checkpoint, truncated, not a
    dict, or needs more than weights-only loading allows."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what}: no file at {path}")
    expected = "expected a PyTorch/Lightning checkpoint (the zip file torch.save writes)"
    if not zipfile.is_zipfile(path):
        size = path.stat().st_size
        raise CheckpointError(f"{what}={path}: not a readable checkpoint ({size} bytes, no zip directory: "
                              f"truncated or another kind of file); {expected}")
    trust = trusting()
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=not trust, mmap=True)
    except Exception as err:  # noqa: BLE001 - torch raises UnpicklingError, RuntimeError, EOFError, ...
        text = str(err)
        if "Weights only load failed" in text:
            found = re.search(r"Unsupported global: GLOBAL (\S+)", text)
            needs = f"the Python object {found.group(1)}" if found else "Python objects beyond tensors"
            raise CheckpointError(
                f"{what}={path}: refused: it needs {needs}, and unpickling it could run code; only tensors "
                f"and plain values are read from untrusted files. If you trust its source, pass "
                f"{TRUST_HINT}") from err
        first = text.strip().splitlines()[0] if text.strip() else type(err).__name__
        raise CheckpointError(f"{what}={path}: not a readable checkpoint ({type(err).__name__}: "
                              f"{first[:200]}); {expected}") from err
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{what}={path}: not a checkpoint (a {type(ckpt).__name__}, expected a dict)")
    return ckpt


def global_step(path: str | Path) -> int:
    """The optimiser step a training checkpoint was saved at."""
    ckpt = read(path)
    if "global_step" not in ckpt:
        raise ValueError(f"{path}: no global_step; not a training checkpoint (ckpt_path resumes only those; "
                         f"start a new run from its weights with model.init_from={path})")
    return int(ckpt["global_step"])


def strip_prefix(state: dict, anchor: str, path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors under the prefix of the first name holding ``anchor`` (``net.backbone.x`` -> ``backbone.x``
    for anchor ``backbone.``), renamed without that prefix."""
    first = next((k for k in state if anchor in k), None)
    if first is None:
        raise ValueError(f"{path}: no '{anchor}' tensor in the state dict; not a checkpoint of this network")
    prefix = first[: first.index(anchor)]
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def plain(cfg) -> dict:
    """A Hydra node or mapping -> a plain resolved dict."""
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)


def net_config(model_cfg: DictConfig | dict) -> dict:
    """The network's node of a ``conf/model`` preset (its ``net``), or ``model_cfg`` itself when it is one."""
    cfg = plain(model_cfg)
    return plain(cfg["net"]) if "net" in cfg else cfg


def _renamed(cfg: dict) -> dict:
    """``cfg`` with every ``_target_`` saved under an old module path moved to the current one."""
    out = {}
    for key, value in cfg.items():
        if isinstance(value, dict):
            value = _renamed(value)
        elif key == "_target_" and isinstance(value, str):
            for old, new in RENAMED_TARGETS.items():
                if value.startswith(old) and not value.startswith(new) and value.count(".") == 2:
                    value = new + value[len(old):]
        out[key] = value
    return out


def legacy_layout(num_keypoints: int = 135, num_pairs: int | None = None) -> Layout:
    """The layout of a file written before files recorded theirs, by its point (and pair) counts: then there
    were BODY_135 (135 points) and its body-foot subset (25). The one place a layout follows from counts."""
    for layout in (BODY_135, BODY_FOOT):
        if layout.num_keypoints == num_keypoints and num_pairs in (None, layout.num_pairs):
            return layout
    raise CheckpointError(f"a file without a layout, with {num_keypoints} keypoints and {num_pairs} pairs: "
                          f"not one of the layouts such files had (BODY_135 135/152, BODY_FOOT 25/35)")


def _with_layout(net_cfg: dict) -> dict:
    """A saved network config with its ``layout`` data: a config from before layouts were recorded
    (``num_keypoints``/``num_pairs``, or neither for BODY_135) is given the layout it was trained with."""
    if "layout" in net_cfg:
        return net_cfg
    net_cfg = dict(net_cfg)
    k, p = net_cfg.pop("num_keypoints", 135), net_cfg.pop("num_pairs", 152)
    net_cfg["layout"] = legacy_layout(int(k), int(p)).to_dict()
    return net_cfg


def network_state(path: str | Path, what: str = "ckpt_path"
                  ) -> tuple[dict[str, torch.Tensor], dict | None, dict]:
    """(network tensors without the module prefix, the network config saved with them (with its layout) or
    None, the checkpoint's hyper-parameters or {})."""
    ckpt = read(path, what)
    tensors = strip_prefix(ckpt.get("state_dict", ckpt), "backbone.", path)
    hparams = dict(ckpt.get("hyper_parameters") or {})
    saved = hparams.get("net")
    return tensors, (_with_layout(_renamed(plain(saved))) if saved is not None else None), hparams


def build_network(model_cfg: DictConfig | dict | None, ckpt_path: str | Path | None = None
                  ) -> tuple[nn.Module, dict]:
    """(network in eval mode, its config). With a checkpoint, the network config saved in it wins over
    ``model_cfg`` (which may then be None); without one, the weights are random."""
    tensors, saved, _ = network_state(ckpt_path) if ckpt_path else (None, None, {})
    if saved is None and model_cfg is None:
        raise ValueError(f"{ckpt_path}: the checkpoint holds no network config (hyper_parameters.net); "
                         "give the model preset (model=<preset>)")
    cfg = saved if saved is not None else net_config(model_cfg)
    cfg.pop("backbone_weights", None)  # a checkpoint or random weights replace any backbone initialisation
    cfg["backbone_init"] = "none"
    net = instantiate(cfg)
    if tensors is not None:
        try:
            net.load_state_dict(tensors)
        except RuntimeError as err:
            raise ValueError(f"ckpt_path {ckpt_path} does not fit the network config: {err}") from err
        log.info("weights: %s", ckpt_path)
    else:
        log.info("weights: random (no ckpt_path given)")
    return net.eval(), cfg


def init_weights(net: nn.Module, path: str | Path, strict: bool = True,
                 names: dict[str, str] | None = None) -> list[str] | str:
    """Copy the network tensors of the checkpoint at ``path`` into ``net`` (``model.init_from``: weights only,
    no optimiser, schedule or step). Strict: a tensor missing on either side or of another shape is an error
    naming the first one. Not strict: those tensors keep their initialisation and are returned (and logged).

    A checkpoint of another layout than ``net.layout`` (its saved one; a plain state dict's is
    :func:`legacy_layout` of its head sizes) is copied by keypoint name instead, whatever ``strict`` (its
    heads never fit): :func:`transfer_by_name` with ``names`` (``model.init_names``); returns its summary."""
    tensors, saved, _ = network_state(path, "model.init_from")
    source = _source_layout(tensors, saved, net)
    if source != net.layout:
        return transfer_by_name(tensors, source, net, names)
    if names:
        log.warning("model.init_names ignored: the checkpoint has this run's layout %s", source.name)
    own = net.state_dict()
    odd = [f"{k}: checkpoint {tuple(v.shape)}, network {tuple(own[k].shape)}"
           for k, v in tensors.items() if k in own and v.shape != own[k].shape]
    odd += [f"{k}: not in the network" for k in tensors if k not in own]
    odd += [f"{k}: not in the checkpoint" for k in own if k not in tensors]
    if odd and strict:
        raise ValueError(f"model.init_from={path}: {odd[0]} ({len(odd)} tensors differ; "
                         "model.init_strict=false keeps those at their initialisation)")
    fit = {k: v for k, v in tensors.items() if k in own and v.shape == own[k].shape}
    net.load_state_dict(fit, strict=False)
    for line in odd:
        log.warning("init_from: left initialised: %s", line)
    log.info("weights: %d of %d tensors from %s", len(fit), len(own), path)
    return odd


def _source_layout(tensors: dict[str, torch.Tensor], saved: dict | None, net: nn.Module) -> Layout:
    """The layout the checkpoint's tensors were trained on: its saved network config's; for a plain state dict
    the legacy layout of its heatmap and PAF counts (or, counts of no legacy layout, the network's when they
    equal its own); the network's for one without heads (a backbone)."""
    if saved is not None:
        return Layout.of(saved["layout"])
    heads = [tensors.get(f"{kind}_stages.0.out.weight") for kind in ("cm", "paf")]
    if any(t is None for t in heads):
        return net.layout
    k, p = heads[0].shape[0], heads[1].shape[0] // 2
    if (k, p) == (net.layout.num_keypoints, net.layout.num_pairs) and (k, p) not in ((135, 152), (25, 35)):
        return net.layout
    return legacy_layout(k, p)


def _remap(fresh: torch.Tensor, theirs: torch.Tensor | None, dim: int, pick: list[tuple[int, int, float]],
           size: int) -> torch.Tensor | None:
    """``fresh`` with its slices ``o`` along ``dim`` set to ``sign * theirs[t]`` for each ``(o, t, sign)`` of
    ``pick``; None when ``theirs`` is absent or not ``fresh``'s shape with ``size`` along ``dim``."""
    if theirs is None or list(theirs.shape) != [size if d == dim else n for d, n in enumerate(fresh.shape)]:
        return None
    out = fresh.clone()
    if pick:
        o, t, sign = (torch.tensor(v) for v in zip(*pick, strict=True))
        shape = [-1 if d == dim else 1 for d in range(out.dim())]
        out.index_copy_(dim, o, theirs.index_select(dim, t).to(out.dtype) * sign.to(out.dtype).view(shape))
    return out


def transfer_by_name(tensors: dict[str, torch.Tensor], source: Layout, net: nn.Module,
                     names: dict[str, str] | None = None) -> str:
    """Copy the tensors of a checkpoint trained on layout ``source`` into ``net`` (a PoseNet of another
    layout) by keypoint name: ``model.init_from`` across layouts. ``names``: ``{checkpoint's name: this
    run's name}`` for points named differently (``model.init_names``); other points match by equal name.

    Heatmap channels of matched points and PAF channels of pairs joining the same two points (negated, x,
    y and bias, when the checkpoint's pair runs the other way) are copied in every stage's output conv and
    in the input columns of the first conv of every stage that reads an earlier stage's output
    (``net.reads``); the other channels keep ``net``'s initialisation, as a fresh head. Every other tensor
    is copied when its shape agrees, else kept. Returns (and logs) a summary of what was copied."""
    target, names = net.layout, dict(names or {})
    for theirs, ours in names.items():
        for name, layout, whose in ((theirs, source, "the checkpoint's"), (ours, target, "this run's")):
            if name not in layout.names:
                raise ValueError(f"model.init_names: {name!r} is not a keypoint of {layout.name} ({whose} "
                                 f"layout; keys name the checkpoint's points, values this run's)")
    inverse = {ours: theirs for theirs, ours in names.items()}
    if len(inverse) < len(names):
        raise ValueError(f"model.init_names: two checkpoint points map onto one of {target.name}: {names}")
    at = {n: i for i, n in enumerate(source.names)}
    kp = {j: at[inverse.get(n, n)] for j, n in enumerate(target.names) if inverse.get(n, n) in at}
    their_pair = {(b, a): (k, -1.0) for k, (a, b) in enumerate(source.pairs)}
    their_pair.update({(a, b): (k, 1.0) for k, (a, b) in enumerate(source.pairs)})
    pairs = {j: their_pair[kp[a], kp[b]] for j, (a, b) in enumerate(target.pairs)
             if a in kp and b in kp and (kp[a], kp[b]) in their_pair}
    pick = {"cm": [(j, i, 1.0) for j, i in kp.items()],
            "paf": [(2 * j + c, 2 * k + c, s) for j, (k, s) in pairs.items() for c in (0, 1)]}
    width = {"cm": (target.num_keypoints, source.num_keypoints),
             "paf": (2 * target.num_pairs, 2 * source.num_pairs)}  # (ours, theirs)
    stages = ([(f"paf_stages.{i}", "paf") for i in range(len(net.paf_stages))]
              + [(f"cm_stages.{i}", "cm") for i in range(len(net.cm_stages))])
    own, new = net.state_dict(), {}
    for (stage, kind), reads in zip(stages, net.reads, strict=True):
        for key in (f"{stage}.out.weight", f"{stage}.out.bias"):
            new[key] = _remap(own[key], tensors.get(key), 0, pick[kind], width[kind][1])
        if reads:  # its input: the features F, then each read stage's output
            key = f"{stage}.blocks.0.convs.0.weight"
            ours = theirs = own[key].shape[1] - sum(width[stages[r][1]][0] for r in reads)
            cols = [(c, c, 1.0) for c in range(ours)]
            for r in reads:
                read = stages[r][1]
                cols += [(ours + o, theirs + t, s) for o, t, s in pick[read]]
                ours, theirs = ours + width[read][0], theirs + width[read][1]
            new[key] = _remap(own[key], tensors.get(key), 1, cols, theirs)
    for key in [k for k, v in new.items() if v is None]:
        log.warning("init_from: %s left initialised: not in the checkpoint or of another size", key)
    others = [k for k in own if k not in new]
    fit = {k: tensors[k] for k in others if k in tensors and tensors[k].shape == own[k].shape}
    net.load_state_dict({**{k: v for k, v in new.items() if v is not None}, **fit}, strict=False)
    missing = [n for j, n in enumerate(target.names) if j not in kp]
    unpaired = ["-".join(target.names[i] for i in p) for j, p in enumerate(target.pairs) if j not in pairs]
    if missing or unpaired:
        log.info("init_from: not in %s: keypoints %s%s, pairs %s%s", source.name, missing[:8],
                 " ..." * (len(missing) > 8), unpaired[:8], " ..." * (len(unpaired) > 8))
    summary = (f"copied {len(kp)}/{target.num_keypoints} keypoint channels, {len(pairs)}/{target.num_pairs} "
               f"PAF pairs, {len(fit)}/{len(others)} other tensors ({source.name} -> {target.name})")
    log.info("init_from: %s", summary)
    return summary
