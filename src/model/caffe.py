"""Caffe weights -> this project's network: a ``.caffemodel`` reader and the layer-name map onto
:class:`src.model.net.PoseNet`.

The reader decodes the protobuf wire format by field number (no protoc, no Caffe): ``NetParameter`` holds
``layer`` = field 100 (``LayerParameter``: name 1, type 2, blobs 7) or, in files written before 2015 such as
``VGG_ILSVRC_19_layers.caffemodel``, ``layers`` = field 2 (``V1LayerParameter``: name 4, type 5, blobs 6).
A ``BlobProto`` keeps its floats in ``data`` (field 5, packed) and its shape in ``shape`` (field 7,
``BlobShape.dim`` field 1) or, in old files, in num/channels/height/width (fields 1-4). Blobs are
``numpy.frombuffer`` views into the file's bytes, so a 250 MB file reads in about a second.

Layer names follow the released BODY_135 deploy network (``shared/fixtures/openpose_body135/layers.json``):
``conv1_1 .. conv4_2`` + ``prelu4_2`` (backbone), ``conv4_3_CPM``/``conv4_4_CPM`` + PReLUs (adapter),
``Mconv{block}_stage{t}_L2_{j}`` / ``Mprelu...`` (PAF stage t, dense block convs), ``Mconv{B+1}_stage{t}_L2``
(1x1 tail) and ``Mconv{B+2}_stage{t}_L2`` (1x1 output); the confidence-map stages the same with ``L1``.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

log = logging.getLogger(__name__)

VGG_CONVS = ["conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3", "conv3_4",
             "conv4_1", "conv4_2"]
"""The VGG-19 convolutions the backbone keeps, in order (``features`` indices 0, 2, 5, ... 21)."""

NETWORKS = {"body135": "deep_wholebody"}
"""Released Caffe networks this project imports: name -> the ``conf/model`` preset with the same layers."""


class CaffeError(ValueError):
    """A caffemodel that cannot be read, or does not fit the network; the message names file and layer."""


@dataclass
class CaffeLayer:
    name: str
    type: str
    blobs: list[np.ndarray] = field(default_factory=list)  # float32 views, shaped as the file says


# -- protobuf wire format ------------------------------------------------------------------------------------
class _Truncated(EOFError):
    """A field whose declared length runs past the end: (field number, where its value starts, the end)."""

    def __init__(self, number: int = 0, start: int = 0, end: int = 0):
        super().__init__(number, start, end)
        self.number, self.start, self.end = number, start, end


def _partial_name(buf: memoryview, start: int, end: int, name_field: int) -> str | None:
    """The name of a message cut short, when its name field made it into the file."""
    try:
        for number, wire, value in _fields(buf, start, end):
            if number == name_field and wire == 2:
                return bytes(buf[value[0]:value[1]]).decode("utf-8", "replace")
    except EOFError:
        pass
    return None


def _varint(buf: memoryview, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= end:
            raise EOFError
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7


def _fields(buf: memoryview, start: int, end: int):
    """(field number, wire type, value) of one message: an int for varints, (start, end) byte spans else."""
    pos = start
    while pos < end:
        key, pos = _varint(buf, pos, end)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos, end)
        elif wire in (1, 2, 5):
            if wire == 2:
                n, pos = _varint(buf, pos, end)
            else:
                n = 8 if wire == 1 else 4
            value, pos = (pos, pos + n), pos + n
            if pos > end:
                raise _Truncated(number, value[0], end)
        else:
            raise CaffeError(f"wire type {wire} (field {number}) at byte {pos}: not a caffemodel")
        yield number, wire, value


def _packed_ints(buf: memoryview, span: tuple[int, int]) -> list[int]:
    out, pos = [], span[0]
    while pos < span[1]:
        v, pos = _varint(buf, pos, span[1])
        out.append(v)
    return out


def _blob(buf: memoryview, span: tuple[int, int]) -> np.ndarray:
    legacy = [None] * 4  # num, channels, height, width
    shape, chunks = None, []
    for number, wire, value in _fields(buf, *span):
        if number in (1, 2, 3, 4) and wire == 0:
            legacy[number - 1] = value
        elif number == 5 and wire == 2:  # packed float
            chunks.append(np.frombuffer(buf, "<f4", (value[1] - value[0]) // 4, value[0]))
        elif number == 5 and wire == 5:  # unpacked float (one per field)
            chunks.append(np.frombuffer(buf, "<f4", 1, value[0]))
        elif number == 8 and wire == 2:  # packed double_data
            chunks.append(np.frombuffer(buf, "<f8", (value[1] - value[0]) // 8, value[0]).astype(np.float32))
        elif number == 7 and wire == 2:  # BlobShape
            shape = []
            for n, w, v in _fields(buf, *value):
                if n == 1:
                    shape += _packed_ints(buf, v) if w == 2 else [v]
    data = chunks[0] if len(chunks) == 1 else np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    if shape is None:  # Caffe's legacy 4-D shape; absent dims are 0 as in Blob::FromProto
        shape = [d or 0 for d in legacy] if any(d is not None for d in legacy) else [data.size]
    if int(np.prod(shape)) != data.size:
        raise CaffeError(f"blob of shape {tuple(shape)} holds {data.size} values")
    return data.reshape(shape)


def read_caffemodel(path: str | Path) -> tuple[list[CaffeLayer], str]:
    """(the layers of the file in order, the file's sha256). Either generation: ``layer`` or V1 ``layers``."""
    path = Path(path)
    if not path.is_file():
        raise CaffeError(f"caffemodel: no file at {path}")
    raw = path.read_bytes()
    sha = hashlib.sha256(raw).hexdigest()
    buf = memoryview(raw)
    layers: list[CaffeLayer] = []
    try:
        for number, wire, value in _fields(buf, 0, len(buf)):
            if wire != 2 or number not in (2, 100):
                continue
            v1 = number == 2
            name_f, type_f, blobs_f = (4, 5, 6) if v1 else (1, 2, 7)
            layer = CaffeLayer(name=f"#{len(layers)}", type="")
            layers.append(layer)
            for n, w, v in _fields(buf, *value):
                if n == name_f and w == 2:
                    layer.name = bytes(buf[v[0]:v[1]]).decode("utf-8", "replace")
                elif n == type_f:
                    layer.type = str(v) if w == 0 else bytes(buf[v[0]:v[1]]).decode("utf-8", "replace")
                elif n == blobs_f and w == 2:
                    try:
                        layer.blobs.append(_blob(buf, v))
                    except CaffeError as err:
                        raise CaffeError(f"{path}: layer {layer.name} blob {len(layer.blobs)}: {err}"
                                         ) from None
    except EOFError as err:
        where = f" after layer {layers[-1].name} (layer {len(layers)})" if layers else ""
        if isinstance(err, _Truncated) and err.number in (2, 100):
            name = _partial_name(buf, err.start, err.end, 4 if err.number == 2 else 1)
            where = f" inside layer {name or '?'} (layer {len(layers) + 1})"
        raise CaffeError(f"{path}: truncated{where}: the file ends before the message does "
                         f"({len(raw)} bytes)") from None
    if not layers:
        raise CaffeError(f"{path}: no layers (neither NetParameter.layer nor .layers): not a caffemodel")
    return layers, sha


# -- layer names -> state dict keys --------------------------------------------------------------------------
def _prelu_key(act: nn.Module, key: str) -> str:
    if not isinstance(act, nn.PReLU):
        raise CaffeError(f"{key}: a {type(act).__name__}, the Caffe network has a PReLU here (batch_norm "
                         "networks have no Caffe counterpart)")
    return f"{key}.weight"


def vgg_layer_map(features: nn.Sequential, prefix: str = "features.") -> dict[str, list[str]]:
    """Caffe VGG layer name -> the ``features.N`` keys (weight, bias), plus ``prelu4_2`` when present."""
    convs = [i for i, m in enumerate(features) if isinstance(m, nn.Conv2d)]
    if len(convs) != len(VGG_CONVS):
        raise CaffeError(f"backbone has {len(convs)} convs, VGG-19's first 10 are expected")
    out = {name: [f"{prefix}{i}.weight", f"{prefix}{i}.bias"]
           for name, i in zip(VGG_CONVS, convs, strict=True)}
    if isinstance(features[convs[-1] + 1], nn.PReLU):
        out["prelu4_2"] = [f"{prefix}{convs[-1] + 1}.weight"]
    return out


def _stage_map(stage: nn.Module, key: str, t: int, branch: str) -> dict[str, list[str]]:
    out = {}
    for i, block in enumerate(stage.blocks):
        for j, act in enumerate(block.acts):
            conv = f"{key}.blocks.{i}.convs.{j}"
            out[f"Mconv{i + 1}_stage{t}_{branch}_{j}"] = [f"{conv}.weight", f"{conv}.bias"]
            out[f"Mprelu{i + 1}_stage{t}_{branch}_{j}"] = [_prelu_key(act, f"{key}.blocks.{i}.acts.{j}")]
    b = len(stage.blocks)
    out[f"Mconv{b + 1}_stage{t}_{branch}"] = [f"{key}.tail.weight", f"{key}.tail.bias"]
    out[f"Mprelu{b + 1}_stage{t}_{branch}"] = [_prelu_key(stage.tail_act, f"{key}.tail_act")]
    out[f"Mconv{b + 2}_stage{t}_{branch}"] = [f"{key}.out.weight", f"{key}.out.bias"]
    return out


def layer_map(net: nn.Module) -> dict[str, list[str]]:
    """Caffe layer name -> the state-dict keys of its blobs, in network order, for a VGG-19 PoseNet.

    Every tensor of the network appears exactly once (checked), so a file that fills the map fills the net.
    """
    out = vgg_layer_map(net.backbone.features, "backbone.features.")
    convs = [i for i, m in enumerate(net.adapter) if isinstance(m, nn.Conv2d)]
    for n, i in enumerate(convs):
        out[f"conv4_{3 + n}_CPM"] = [f"adapter.{i}.weight", f"adapter.{i}.bias"]
        out[f"prelu4_{3 + n}_CPM"] = [_prelu_key(net.adapter[i + 1], f"adapter.{i + 1}")]
    for t, stage in enumerate(net.paf_stages):
        out.update(_stage_map(stage, f"paf_stages.{t}", t, "L2"))
    for s, stage in enumerate(net.cm_stages):
        out.update(_stage_map(stage, f"cm_stages.{s}", s, "L1"))
    keys = [k for ks in out.values() for k in ks]
    own = set(net.state_dict())
    if set(keys) != own or len(keys) != len(own):
        left = sorted(own - set(keys)) or sorted(set(keys) - own)
        raise CaffeError(f"the network does not match the Caffe layer layout (first odd tensor: {left[0]})")
    return out


def _strip(shape) -> tuple[int, ...]:
    """A shape without leading 1s (Caffe's legacy blobs are 4-D: a bias of 64 is 1x1x1x64)."""
    shape = tuple(int(d) for d in shape)
    while len(shape) > 1 and shape[0] == 1:
        shape = shape[1:]
    return shape


def blob_tensor(blob: np.ndarray, like: torch.Tensor, where: str) -> torch.Tensor:
    """``blob`` as a tensor of ``like``'s shape; a :class:`CaffeError` naming ``where`` if shapes differ."""
    if _strip(blob.shape) != _strip(like.shape):
        raise CaffeError(f"{where} has shape {tuple(blob.shape)}, the network expects {tuple(like.shape)}")
    return torch.from_numpy(blob.reshape(like.shape).astype(np.float32, copy=True))


def state_from_layers(layers: list[CaffeLayer], mapping: dict[str, list[str]], own: dict[str, torch.Tensor],
                      path: str | Path, extra_ok: bool = False) -> dict[str, torch.Tensor]:
    """The state dict ``mapping`` asks for, from ``layers`` (file order), every shape checked against ``own``.

    Errors name the first layer that disagrees: a layer with weights the map does not know (unless
    ``extra_ok``), a wrong blob count or shape, or a mapped layer the file lacks.
    """
    state: dict[str, torch.Tensor] = {}
    seen = set()
    for layer in layers:
        if not layer.blobs:
            continue
        keys = mapping.get(layer.name)
        if keys is None:
            if extra_ok:
                continue
            raise CaffeError(f"{path}: layer {layer.name} ({layer.type}, {len(layer.blobs)} blobs) is not in "
                             "this network: another network's caffemodel?")
        if layer.name in seen:
            raise CaffeError(f"{path}: layer {layer.name} appears twice")
        seen.add(layer.name)
        if len(layer.blobs) != len(keys):
            raise CaffeError(f"{path}: layer {layer.name} has {len(layer.blobs)} blobs, expected {len(keys)}")
        for i, (blob, key) in enumerate(zip(layer.blobs, keys, strict=True)):
            state[key] = blob_tensor(blob, own[key], f"{path}: layer {layer.name} blob {i} ({key})")
    missing = [name for name in mapping if name not in seen]
    if missing:
        raise CaffeError(f"{path}: layer {missing[0]} is missing ({len(missing)} of {len(mapping)} layers "
                         "absent): another network's caffemodel?")
    return state


# -- the import ----------------------------------------------------------------------------------------------
def import_network(path: str | Path, net_cfg: dict) -> tuple[nn.Module, str]:
    """(the network of ``net_cfg`` holding the caffemodel's weights, the file's sha256)."""
    from hydra.utils import instantiate

    net = instantiate({**net_cfg, "backbone_init": "none", "backbone_weights": None})
    own = net.state_dict()
    mapping = layer_map(net)
    layers, sha = read_caffemodel(path)
    net.load_state_dict(state_from_layers(layers, mapping, own, path))
    return net.eval(), sha


def checkpoint_dict(net: nn.Module, model_cfg: dict, source: str | Path, sha: str) -> dict:
    """What :mod:`src.core.checkpoint` reads: ``state_dict`` (``net.`` keys) and the module's
    ``hyper_parameters`` (the preset's, the network's with ``backbone_init: none``); no ``global_step``, so it
    starts runs (``model.init_from``) but does not resume them."""
    hparams = {k: v for k, v in model_cfg.items() if k != "_target_"}
    hparams["net"] = {**model_cfg["net"], "backbone_init": "none"}
    hparams["net"].pop("backbone_weights", None)
    return {"state_dict": {f"net.{k}": v for k, v in net.state_dict().items()},
            "hyper_parameters": hparams,
            "caffe_source": {"file": str(source), "sha256": sha}}
