"""Test-only: write caffemodels (protobuf wire format by hand) and run a Caffe layer table with torch.

``encode_layer`` / ``caffemodel`` write either generation: ``layer`` (field 100, blobs with ``shape``) or the
2014 V1 ``layers`` (field 2, blobs with num/channels/height/width). ``interpret`` runs a deploy layer table
(``shared/fixtures/openpose_body135/layers.json``) in file order with ``torch.nn.functional``,
independently of ``src.model``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

V1_TYPES = {"Convolution": 4, "ReLU": 18, "Pooling": 17, "Concat": 3, "InnerProduct": 14}


def _varint(v: int) -> bytes:
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _key(number: int, wire: int) -> bytes:
    return _varint((number << 3) | wire)


def _bytes(number: int, payload: bytes) -> bytes:
    return _key(number, 2) + _varint(len(payload)) + payload


def encode_blob(array: np.ndarray, legacy: bool) -> bytes:
    data = _bytes(5, np.ascontiguousarray(array, "<f4").tobytes())
    if legacy:  # num, channels, height, width: leading 1s as old Caffe wrote biases (1x1x1xN)
        dims = [1] * (4 - array.ndim) + list(array.shape)
        return b"".join(_key(i + 1, 0) + _varint(d) for i, d in enumerate(dims)) + data
    return data + _bytes(7, _bytes(1, b"".join(_varint(d) for d in array.shape)))


def encode_layer(name: str, type_: str, blobs: list[np.ndarray], v1: bool) -> bytes:
    if v1:
        body = _bytes(4, name.encode()) + _key(5, 0) + _varint(V1_TYPES.get(type_, 0))
        body += b"".join(_bytes(6, encode_blob(b, True)) for b in blobs)
        return _bytes(2, body)
    body = _bytes(1, name.encode()) + _bytes(2, type_.encode())
    body += b"".join(_bytes(7, encode_blob(b, False)) for b in blobs)
    return _bytes(100, body)


def caffemodel(layers: list[bytes], name: str = "net") -> bytes:
    return _bytes(1, name.encode()) + b"".join(layers)


def random_blobs(table: list[dict], channels: int = 3, seed: int = 0) -> dict[str, list[np.ndarray]]:
    """He-scaled random weights for every Convolution and PReLU of a layer table (shapes from channels)."""
    rng = np.random.default_rng(seed)
    width = {"image": channels}
    blobs = {}
    for layer in table:
        cin = [width[b] for b in layer["bottom"]]
        kind = layer["type"]
        if kind == "Convolution":
            k, n = layer["kernel_size"], layer["num_output"]
            fan_in = cin[0] * k * k
            w = rng.standard_normal((n, cin[0], k, k), dtype=np.float32) * np.float32(np.sqrt(2.0 / fan_in))
            blobs[layer["name"]] = [w, rng.uniform(-0.1, 0.1, n).astype(np.float32)]
            out = n
        elif kind == "PReLU":
            blobs[layer["name"]] = [rng.uniform(0.0, 0.5, cin[0]).astype(np.float32)]
            out = cin[0]
        elif kind == "Concat":
            out = sum(cin)
        else:
            out = cin[0]
        width[layer["top"][0]] = out
    return blobs


def interpret(table: list[dict], blobs: dict[str, list[np.ndarray]], x: torch.Tensor,
              output: str = "net_output") -> torch.Tensor:
    """Run the layer table on ``x`` (Caffe semantics; max pooling here only sees even sizes, where Caffe's
    ceil rounding and torch's floor agree)."""
    tops = {"image": x}
    for layer in table:
        ins = [tops[b] for b in layer["bottom"]]
        kind = layer["type"]
        if kind == "Convolution":
            w, b = (torch.from_numpy(a) for a in blobs[layer["name"]])
            y = F.conv2d(ins[0], w, b, stride=layer.get("stride", 1), padding=layer.get("pad", 0))
        elif kind == "ReLU":
            y = F.relu(ins[0])
        elif kind == "PReLU":
            y = F.prelu(ins[0], torch.from_numpy(blobs[layer["name"]][0]))
        elif kind == "Pooling":
            assert layer["pool"] == "MAX" and all(s % layer["stride"] == 0 for s in ins[0].shape[-2:])
            y = F.max_pool2d(ins[0], layer["kernel_size"], layer["stride"])
        elif kind == "Concat":
            y = torch.cat(ins, layer.get("axis", 1))
        else:
            raise ValueError(f"layer {layer['name']}: type {kind} not interpreted")
        tops[layer["top"][0]] = y
    return tops[output]
