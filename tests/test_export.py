"""Export: ONNX (through ONNX Runtime) and TorchScript match PyTorch to 1e-4 at two input sizes; metadata."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from hydra import compose, initialize
from hydra.utils import instantiate

from src.core.checkpoint import build_network, net_config
from src.core.skeleton import BODY_135
from src.export import export
from src.inference import NetworkModel

ROOT = Path(__file__).resolve().parents[1]
SIZES = [[64, 96], [120, 48]]  # two shapes: the dynamic height and width are exercised


@pytest.fixture(scope="module")
def tiny():
    with initialize(version_base="1.3", config_path="../conf"):
        return compose("export", overrides=["model=tiny"]).model


@pytest.fixture(scope="module")
def checkpoint(tiny, tmp_path_factory):
    """The real PoseModule of the tiny preset, saved the way Lightning saves it (``state_dict`` of the whole
    module, ``hyper_parameters`` = its hparams) after its weights were moved off their initialisation."""
    torch.manual_seed(3)
    module = instantiate(tiny, _recursive_=False)  # as src.train builds it
    for p in module.net.parameters():  # so that loading is visible in the outputs
        p.data += 0.05 * torch.randn_like(p)
    path = tmp_path_factory.mktemp("ckpt") / "model.ckpt"
    # Lightning saves hparams as a plain dict (an AttributeDict would need the full unpickler)
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}, path)
    return path, module.net.eval()


@pytest.fixture(scope="module")
def onnx_file(checkpoint, tmp_path_factory):
    """The checkpoint exported once to ONNX (the export checks parity itself); (path, metadata)."""
    out = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    return out, export(None, "onnx", out, ckpt_path=checkpoint[0], check_sizes=SIZES)


def _reference(net, x):
    with torch.no_grad():
        return NetworkModel(net)(torch.from_numpy(x)).numpy()


def test_onnx_matches_pytorch_at_two_sizes(checkpoint, onnx_file):
    _, net = checkpoint
    out, meta = onnx_file
    assert meta["parity"]["max_abs_diff"] <= 1e-4
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    for h, w in SIZES + [[8, 16]]:
        x = (rng.random((1, 3, h, w), np.float32) - 0.5).astype(np.float32)
        got = session.run(None, {"image": x})[0]
        ref = _reference(net, x)
        assert got.shape == (1, 439, h // 8, w // 8)
        assert np.abs(ref).max() > 1e-2  # a meaningful comparison, not two near-zero maps
        assert np.abs(got - ref).max() <= 1e-4


def test_torchscript_matches_pytorch_and_batches(checkpoint, tmp_path):
    path, net = checkpoint
    out = tmp_path / "tiny.pt"
    export(None, "torchscript", out, ckpt_path=path, check_sizes=SIZES)
    module = torch.jit.load(str(out))
    x = (np.random.default_rng(1).random((2, 3, 72, 56), np.float32) - 0.5).astype(np.float32)
    with torch.no_grad():
        got = module(torch.from_numpy(x)).numpy()
    assert np.abs(got - _reference(net, x)).max() <= 1e-4


def test_metadata_beside_the_file(checkpoint, onnx_file):
    path, _ = checkpoint
    out, _ = onnx_file
    meta = json.loads(out.with_name("tiny.onnx.json").read_text())
    assert meta["keypoint_names"] == list(BODY_135.names) and len(meta["pairs"]) == 152
    assert meta["pairs"][0] == list(BODY_135.pairs[0])
    assert meta["stride"] == 8 and meta["input"]["multiple_of"] == 8
    assert meta["input"]["normalisation"]["formula"] == "pixel / 256 - 0.5"
    assert meta["output"]["heatmaps"] == [0, 135] and meta["output"]["pafs"] == [135, 439]
    assert meta["model_config"]["adapter"] == [96, 64] and meta["checkpoint"] == str(path)


def test_random_weights_without_checkpoint(tiny):
    net, cfg = build_network(tiny)
    assert cfg == {k: v for k, v in net_config(tiny).items() if k != "backbone_weights"}
    assert net(torch.zeros(1, 3, 16, 16))[-1].shape == (1, 135, 2, 2)


def test_bad_input_is_named(tiny, checkpoint, tmp_path):
    with pytest.raises(FileNotFoundError, match="no file"):
        build_network(tiny, tmp_path / "missing.ckpt")
    with pytest.raises(ValueError, match="format must be onnx or torchscript"):
        export(tiny, "tflite", tmp_path / "x.tflite")
    with pytest.raises(ValueError, match="not a multiple of 8"):
        export(tiny, "torchscript", tmp_path / "x.pt", check_sizes=[[60, 64]])
    path, net = checkpoint
    wrong = {"state_dict": {f"net.{k}": v for k, v in net.state_dict().items()},
             "hyper_parameters": {"net": {**net_config(tiny), "adapter": [32, 64]}}}
    torch.save(wrong, tmp_path / "wrong.ckpt")
    with pytest.raises(ValueError, match="does not fit the network config"):
        build_network(None, tmp_path / "wrong.ckpt")
    torch.save({"state_dict": {"w": torch.zeros(1)}}, tmp_path / "other.ckpt")
    with pytest.raises(ValueError, match="not a checkpoint of this network"):
        build_network(tiny, tmp_path / "other.ckpt")


def test_cli_writes_file_and_metadata(tmp_path):
    out = tmp_path / "cli.pt"
    cmd = [sys.executable, "-m", "src.export", "model=tiny", "format=torchscript", f"out={out}",
           "check_sizes=[[64,64],[48,80]]"]
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    meta = json.loads(out.with_name("cli.pt.json").read_text())
    assert meta["format"] == "torchscript" and torch.jit.load(str(out)) is not None
    assert meta["checkpoint"] is None and meta["parity"]["sizes"] == [[64, 64], [48, 80]]
    assert meta["parity"]["max_abs_diff"] <= 1e-4


def test_parity_is_read_against_the_outputs_scale(tiny, tmp_path):
    """An imported or random network whose maps reach ~100: float32 rounding of the folded export differs by
    more than 1e-4 in absolute terms, but not relative to the outputs (the check is tolerance x max |y|)."""
    torch.manual_seed(0)
    module = instantiate(tiny, _recursive_=False)
    for p in module.net.parameters():
        p.data += 0.3 * torch.randn_like(p)
    for stage in [*module.net.paf_stages, *module.net.cm_stages]:
        stage.out.weight.data *= 50.0
    path = tmp_path / "large.ckpt"
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}, path)
    meta = export(None, "torchscript", tmp_path / "large.pt", ckpt_path=str(path), check_sizes=[[64, 64]])
    parity = meta["parity"]
    assert parity["max_abs_output"] > 30 and parity["max_abs_diff"] > 1e-4  # absolute 1e-4: refused
    assert parity["max_abs_diff"] <= 1e-4 * parity["max_abs_output"]
    with pytest.raises(AssertionError, match=r"exceeds tolerance 1e-12 x max\(1, max \|output\|"):
        export(None, "torchscript", tmp_path / "strict.pt", ckpt_path=str(path), check_sizes=[[64, 64]],
               tolerance=1e-12)
