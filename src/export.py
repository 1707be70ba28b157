"""Export the network to ONNX or TorchScript with a metadata JSON beside it, checked against PyTorch.

``python -m src.export [ckpt_path=CKPT] model=deep_wholebody format=onnx|torchscript out=FILE``

The exported graph is the network folded for inference (``src.model.fold``, as ``predict`` runs a
checkpoint); it maps a normalised image ``[1, 3, H, W]`` (``pixel / 256 - 0.5``, H and W any multiples of 8)
to the layout's output ``[1, K + 2P, H/8, W/8]`` (BODY_135: 135 heatmaps, then 304 PAF channels). Without a
checkpoint the weights are random (for timing and tests). After writing, the file is loaded back (ONNX Runtime
or ``torch.jit.load``) and run at every size in ``check_sizes``; a max abs difference to PyTorch (the network
before folding, so the check covers the folding too) above ``tolerance x max(1, max |output|)`` is an error:
float32 rounding grows with the outputs' scale (an imported or random network's maps reach tens). ONNX uses
the dynamo exporter with dynamic height and width declared as ``8 * Dim``, so any multiple of 8 is accepted;
TorchScript is traced (the network has no data-dependent control flow).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import hydra
import numpy as np
import onnx
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from src.core import checkpoint
from src.core.checkpoint import build_network
from src.core.cli import ensure_writable, report_errors, run
from src.core.geometry import NORMALISATION, STRIDE
from src.core.skeleton import Layout
from src.inference import EXPORT_METADATA, Model, NetworkModel, load_exported
from src.model.fold import FoldedPoseNet

log = logging.getLogger(__name__)
logging.getLogger("onnx_ir").setLevel(logging.WARNING)  # one INFO line per deduplicated initializer

def metadata(net_cfg: dict, layout: Layout, fmt: str, ckpt_path: str | None) -> dict:
    """What a consumer of the exported file needs: the layout (all of it, as data: ``Layout.of`` reads it
    back), keypoint names, pairs, stride, normalisation."""
    k, p = layout.num_keypoints, layout.num_pairs
    return {
        "format": fmt,
        "input": {"name": "image", "shape": ["batch", 3, "H", "W"], "multiple_of": STRIDE,
                  "normalisation": NORMALISATION},
        "output": {"name": "maps", "shape": ["batch", k + 2 * p, "H/8", "W/8"], "heatmaps": [0, k],
                   "pafs": [k, k + 2 * p], "paf_pair_k": f"x at channel {k}+2k, y at {k + 1}+2k"},
        "stride": STRIDE,
        "layout": layout.to_dict(),
        "keypoint_names": list(layout.names),
        "keypoint_groups": {g: [r.start, r.stop] for g, r in layout.groups.items()},
        "pairs": [list(pair) for pair in layout.pairs],
        "model_config": net_cfg,
        "checkpoint": ckpt_path,
    }


def export_onnx(model: nn.Module, out: Path, size: tuple[int, int], meta: dict) -> None:
    """Dynamo export with batch, height and width dynamic (height and width as multiples of 8); ``meta`` in
    the model's ``metadata_props`` (``src.inference.EXPORT_METADATA``)."""
    h, w = torch.export.Dim("h8", min=1, max=1024), torch.export.Dim("w8", min=1, max=1024)
    batch = torch.export.Dim("batch", min=1, max=64)
    example = torch.zeros(2, 3, *size)
    program = torch.onnx.export(model, (example,), dynamo=True, input_names=["image"], output_names=["maps"],
                                dynamic_shapes=({0: batch, 2: 8 * h, 3: 8 * w},), verbose=False)
    program.save(str(out))
    proto = onnx.load(str(out))
    entry = proto.metadata_props.add()
    entry.key, entry.value = EXPORT_METADATA, json.dumps(meta)
    onnx.save(proto, str(out))


def export_torchscript(model: nn.Module, out: Path, size: tuple[int, int], meta: dict) -> None:
    """A traced module; ``meta`` as its extra file ``src.inference.EXPORT_METADATA``."""
    with torch.no_grad():
        traced = torch.jit.trace(model, torch.zeros(1, 3, *size), check_trace=False)
    torch.jit.save(traced, str(out), _extra_files={EXPORT_METADATA: json.dumps(meta)})


def parity(model: Model, path: str | Path, sizes: list[tuple[int, int]], seed: int = 0
           ) -> tuple[float, float]:
    """(max abs difference between the exported file and ``model`` in PyTorch, max abs PyTorch output: the
    scale the difference is to be read against) over one random input per size."""
    exported = load_exported(path)
    gen = torch.Generator().manual_seed(seed)
    worst = scale = 0.0
    for h, w in sizes:
        if h % STRIDE or w % STRIDE:
            raise ValueError(f"check size {h}x{w} is not a multiple of {STRIDE}")
        x = torch.rand(1, 3, h, w, generator=gen) - 0.5
        with torch.no_grad():
            ref = model(x).numpy()
        got = exported(x.numpy())
        if got.shape != ref.shape:
            raise AssertionError(f"{path}: output shape {got.shape} at input {h}x{w}, "
                                 f"PyTorch gives {ref.shape}")
        diff = float(np.abs(got - ref).max())
        log.info("parity %dx%d: max abs diff %.2e (outputs up to %.2e)", h, w, diff, np.abs(ref).max())
        worst, scale = max(worst, diff), max(scale, float(np.abs(ref).max()))
    return worst, scale


def export(model_cfg: DictConfig | dict | None, fmt: str, out: str | Path, ckpt_path: str | None = None,
           check_sizes: list | None = None, tolerance: float = 1e-4, trust_checkpoint: bool = False) -> dict:
    """Write ``out`` and ``out``.json; return the metadata with the measured parity added. ``ckpt_path`` is
    read weights-only unless ``trust_checkpoint``."""
    if fmt not in ("onnx", "torchscript"):
        raise ValueError(f"format must be onnx or torchscript, got {fmt!r}")
    sizes = [tuple(int(v) for v in s) for s in (check_sizes or [[256, 256], [192, 320]])]
    out = ensure_writable(out, "out")  # before the export and its parity check, not after
    with checkpoint.trusted(trust_checkpoint):
        net, net_cfg = build_network(model_cfg, ckpt_path)
    model = FoldedPoseNet(net)                          # what predict runs; checked against the net itself
    meta = metadata(net_cfg, net.layout, fmt, str(ckpt_path) if ckpt_path else None)
    if fmt == "onnx":
        export_onnx(model, out, sizes[0], meta)
    else:
        export_torchscript(model, out, sizes[0], meta)
    diff, scale = parity(NetworkModel(net.eval()), out, sizes)
    if not diff <= tolerance * max(1.0, scale):
        raise AssertionError(f"{out}: max abs difference to PyTorch {diff:.3e} exceeds tolerance "
                             f"{tolerance:g} x max(1, max |output| {scale:.3g})")
    meta["parity"] = {"max_abs_diff": diff, "max_abs_output": scale, "sizes": [list(s) for s in sizes],
                      "tolerance": tolerance}
    Path(f"{out}.json").write_text(json.dumps(meta, indent=1))
    log.info("wrote %s and %s.json (parity %.2e at %s)", out, out, diff, sizes)
    return meta


@hydra.main(version_base="1.3", config_path="../conf", config_name="export")
@report_errors
def main(cfg: DictConfig) -> None:
    export(cfg.model, cfg.format, cfg.out, cfg.ckpt_path, OmegaConf.to_container(cfg.check_sizes),
           cfg.tolerance, bool(cfg.get("trust_checkpoint", False)))


if __name__ == "__main__":
    run(main)
