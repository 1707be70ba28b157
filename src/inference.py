"""Image -> people, the one inference path: model file, normalisation, eval resize, scales, decoder, and back
to the original image's pixels.

Validation while training, ``src.evaluate``, ``src.predict``, ``src.oracle`` and the benchmarks all go
through here, so the normalisation and the eval resize (``src.core.geometry``), the multi-scale
run (:func:`multiscale_maps`) and the mapping back (:meth:`Inference.decode`) exist once.

A *model* is any callable ``normalised [B, 3, H, W] -> maps [B, K + 2P, H/8, W/8]`` with a ``layout``
attribute (:func:`load_model` makes one from a checkpoint, folded for inference by
:class:`src.model.fold.FoldedPoseNet`, or from an ONNX or a TorchScript file, :class:`ExportedModel`;
:class:`NetworkModel` wraps a ``PoseNet`` being trained). The layout travels with the model: from the
checkpoint's network config or the exported file's metadata, never from the number of channels.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from src.core import checkpoint
from src.core.geometry import STRIDE, normalise, pad_to, resize_for_eval
from src.core.skeleton import Layout
from src.decoder.decode import Decoder, Person, to_image_pixels
from src.model.fold import FoldedPoseNet

Model = Callable[[torch.Tensor], torch.Tensor]

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
CHECKPOINT_SUFFIXES = {".ckpt", ".pth"}
TORCHSCRIPT_SUFFIXES = {".pt", ".ts", ".torchscript"}


def multiscale_maps(model: Model, x: torch.Tensor, scales: list[float], flip: Layout | None = None
                    ) -> list[torch.Tensor]:
    """The maps of the normalised batch ``x`` at each factor of ``scales`` (image resized by ``s``, padded
    right/bottom to a multiple of the stride, so coordinates are not shifted), as float32. ``flip``: the
    maps' layout, to average each with the maps of the mirrored input (:func:`unflip`); None: no flip."""
    stride = STRIDE
    out = []
    for s in scales:
        xs = x if s == 1 else F.interpolate(x, scale_factor=s, mode="bilinear", align_corners=False)
        h, w = xs.shape[-2:]
        xs = F.pad(xs, (0, pad_to(w, stride), 0, pad_to(h, stride)))
        maps = model(xs).float()
        if flip is not None:
            maps = unflip(maps, model(xs.flip(-1)).float(), flip)
        out.append(maps)
    return out


def unflip(maps: torch.Tensor, mirrored: torch.Tensor, layout: Layout) -> torch.Tensor:
    """The average of ``maps`` and the maps of the mirrored input brought back: flipped left-right (the padded
    input's width is a multiple of the stride, so cell g maps onto cell W/8 - 1 - g exactly), heatmaps of
    left and right points swapped, each PAF read from its mirror pair with x negated (``flip_channels``).
    Channels without a mirror keep ``maps`` alone."""
    if maps.shape[1] != layout.num_channels:
        raise ValueError(f"flip: maps have {maps.shape[1]} channels, layout {layout.name} has "
                         f"{layout.num_channels}")
    source, sign = layout.flip_channels
    sign = torch.as_tensor(sign, device=maps.device)[:, None, None]
    back = mirrored.flip(-1)[:, torch.as_tensor(source, device=maps.device)] * sign
    return torch.where(sign != 0, (maps + back) / 2, maps)


class NetworkModel:
    """A ``PoseNet`` as a model: its output contract ``net.maps(net(x))`` (a class, not a closure, so that a
    LightningModule holding it pickles for ``ddp_spawn``)."""

    def __init__(self, net: torch.nn.Module, channels_last: bool = False):
        self.net, self.channels_last = net, channels_last

    @property
    def layout(self) -> Layout:
        return self.net.layout

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous(memory_format=torch.channels_last) if self.channels_last else x
        return self.net.maps(self.net(x))


def load_exported(path: str | Path) -> Callable[[np.ndarray], np.ndarray]:
    """``np.ndarray [B,3,H,W] float32 -> np.ndarray [B,K+2P,H/8,W/8]`` for an ONNX or TorchScript file."""
    path = Path(path)
    if path.suffix == ".onnx":
        import onnxruntime as ort

        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider")
                     if p in ort.get_available_providers()]
        session = ort.InferenceSession(str(path), providers=providers)
        name = session.get_inputs()[0].name
        return lambda x: session.run(None, {name: x})[0]
    module = torch.jit.load(str(path), map_location="cpu").eval()

    def run(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return module(torch.from_numpy(x)).numpy()

    return run


def load_model(path: str | Path, device: str = "cpu") -> Model:
    """A model from a checkpoint (``.ckpt``/``.pth``, rebuilt from the config saved in it) or an exported
    file (``.onnx`` by ONNX Runtime, ``.pt``/``.ts`` by TorchScript; both on the CPU)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ckpt_path: no file at {path}")
    suffix = path.suffix.lower()
    if suffix in CHECKPOINT_SUFFIXES:
        return FoldedPoseNet(checkpoint.build_network(None, path)[0], device)
    if suffix == ".onnx" or suffix in TORCHSCRIPT_SUFFIXES:
        return ExportedModel(path)
    raise ValueError(f"ckpt_path: {path} is neither a checkpoint ({sorted(CHECKPOINT_SUFFIXES)}), ONNX "
                     f"(.onnx) nor TorchScript ({sorted(TORCHSCRIPT_SUFFIXES)})")


EXPORT_METADATA = "wholebody.json"
"""The name of the metadata an exported file carries (ONNX ``metadata_props`` key, TorchScript extra file);
``<file>.json`` beside it holds the same plus the parity check."""


def exported_metadata(path: str | Path) -> dict:
    """The metadata of an exported file: embedded in it, else the ``<file>.json`` beside it, else {}."""
    path = Path(path)
    text = None
    if path.suffix.lower() == ".onnx":
        import onnx

        props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
        text = props.get(EXPORT_METADATA)
    else:
        files = {EXPORT_METADATA: ""}
        torch.jit.load(str(path), map_location="cpu", _extra_files=files)
        text = files[EXPORT_METADATA] or None
    sidecar = Path(f"{path}.json")
    if text is None and sidecar.is_file():
        text = sidecar.read_text()
    return json.loads(text) if text else {}


class ExportedModel:
    """An ONNX (ONNX Runtime) or TorchScript file as a model, on the CPU, with the layout its metadata names
    (a file written before layouts were recorded is read as the BODY_135 or body-foot file it is, by its
    keypoint names)."""

    def __init__(self, path: str | Path):
        self.run = load_exported(path)
        meta = exported_metadata(path)
        if meta.get("layout"):
            self.layout = Layout.of(meta["layout"])
        else:
            names = meta.get("keypoint_names") or []
            self.layout = checkpoint.legacy_layout(len(names) or 135, len(meta.get("pairs") or []) or None)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.run(x.detach().cpu().numpy()))


class Inference:
    """A model, a decoder and the input scales: uint8 images -> people in original-image pixels.

    ``scales`` are factors of the network input (``[2, 1.5, 1, 0.5]`` = the paper's 960/720/480/240 at height
    480); the maps of every scale are averaged by the decoder (spec §7.2). ``flip`` averages each with the
    maps of the mirrored image. ``precision`` ``bf16``/``fp16`` runs the network under CUDA autocast (the
    decoder always reads float32 maps); ``fp32`` is the only choice on the CPU.
    """

    def __init__(self, model: Model, decoder: Decoder | None = None, scales: list[float] | None = None,
                 device: str | torch.device | None = None, flip: bool = False, precision: str = "fp32"):
        layout = getattr(model, "layout", None)
        decoder = decoder or Decoder(layout=layout or "body135")
        if layout is not None and decoder.layout != layout:
            raise ValueError(f"the decoder's layout {decoder.layout.name} is not the model's {layout.name}")
        self.model, self.decoder, self.flip = model, decoder, bool(flip)
        self.scales = [float(s) for s in (scales or [1.0])]
        if min(self.scales) <= 0:
            raise ValueError(f"scales must be positive factors, got {self.scales}")
        self.device = None if device is None else torch.device(device)  # None: where the images are
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
        if precision != "fp32" and (self.device is None or self.device.type != "cuda"):
            raise ValueError(f"precision={precision} needs device=cuda (the CPU path runs in fp32)")
        self.precision = precision

    def maps(self, images: torch.Tensor, scales: list[float] | None = None) -> list[torch.Tensor]:
        """uint8 BGR (or normalised) ``[B, 3, H, W]`` -> the maps at each scale (``self.scales`` if None)."""
        x = normalise(images if self.device is None else images.to(self.device))
        with torch.autocast("cuda", dtype=PRECISIONS[self.precision], enabled=self.precision != "fp32"):
            return multiscale_maps(self.model, x, self.scales if scales is None else scales,
                                   self.decoder.layout if self.flip else None)

    def decode(self, per_scale: list[torch.Tensor], input_hw: tuple[int, int], scale: torch.Tensor,
               offset: torch.Tensor) -> list[list[Person]]:
        """Maps of a batch at ``self.scales`` -> each image's people, mapped back with its ``scale`` and
        ``offset`` ``[B, 2]`` (x, y; ``orig = (input - offset) / scale``)."""
        out = []
        for i in range(per_scale[0].shape[0]):
            people = self.decoder([m[i] for m in per_scale], input_hw, self.scales)
            out.append(to_image_pixels(people, tuple(float(v) for v in scale[i]),
                                       tuple(float(v) for v in offset[i])))
        return out

    def batch(self, batch: dict) -> tuple[list[list[Person]], list[torch.Tensor]]:
        """A validation batch (``image``, ``scale``, ``offset``) -> (people per image, maps per scale)."""
        per_scale = self.maps(batch["image"])
        return self.decode(per_scale, tuple(batch["image"].shape[-2:]), batch["scale"], batch["offset"]), \
            per_scale

    def image(self, image: np.ndarray, height: int, fit: str = "height") -> list[Person]:
        """One BGR uint8 image of any size -> its people in its own pixels."""
        resized = resize_for_eval(image, height, fit)
        x = torch.from_numpy(resized.image).permute(2, 0, 1)[None]
        per_scale = self.maps(x)
        return self.decode(per_scale, tuple(x.shape[-2:]), torch.from_numpy(resized.scale)[None],
                           torch.from_numpy(resized.offset)[None])[0]
