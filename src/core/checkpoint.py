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


def network_state(path: str | Path, what: str = "ckpt_path"
                  ) -> tuple[dict[str, torch.Tensor], dict | None, dict]:
    """(network tensors without the module prefix, the network config saved with them or None, the
    checkpoint's hyper-parameters or {})."""
    ckpt = read(path, what)
    tensors = strip_prefix(ckpt.get("state_dict", ckpt), "backbone.", path)
    hparams = dict(ckpt.get("hyper_parameters") or {})
    saved = hparams.get("net")
    return tensors, (_renamed(plain(saved)) if saved is not None else None), hparams


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


def init_weights(net: nn.Module, path: str | Path, strict: bool = True) -> list[str]:
    """Copy the network tensors of the checkpoint at ``path`` into ``net`` (``model.init_from``: weights only,
    no optimiser, schedule or step). Strict: a tensor missing on either side or of another shape is an error
    naming the first one. Not strict: those tensors keep their initialisation and are returned (and logged),
    e.g. the output convs of another output layout."""
    tensors, _, _ = network_state(path, "model.init_from")
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
