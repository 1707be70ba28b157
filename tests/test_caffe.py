"""The Caffe import is the released network: random weights for every layer of the released BODY_135 layer
table, written as a caffemodel (both generations), give the same ``net_output`` through an independent
interpreter of the table and through the imported PoseNet; every bad file is an error naming its layer."""

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from layouts import sized

from src.core import checkpoint
from src.inference import load_model
from src.model import caffe
from src.model.net import count_parameters
from tests.caffe_writer import caffemodel, encode_layer, interpret, random_blobs
from tests.conftest import FIXTURES

ROOT = Path(__file__).resolve().parents[1]
LAYERS = FIXTURES / "openpose_body135" / "layers.json"
RELEASED_PARAMETERS = 63_578_247


def model_cfg(preset: str = "deep_wholebody", *overrides: str) -> dict:
    with initialize_config_dir(version_base="1.3", config_dir=str(ROOT / "conf")):
        return checkpoint.plain(compose(overrides=[f"+model={preset}", *overrides]).model)


@pytest.fixture(scope="module")
def released():
    """(layer table, random blobs of every layer): the released network's shapes, random values."""
    if not LAYERS.is_file():
        pytest.skip("../shared/fixtures/openpose_body135/layers.json is absent")
    table = json.loads(LAYERS.read_text())["layers"]
    return table, random_blobs(table)


def write(path: Path, table: list[dict], blobs: dict, v1: bool = False, drop: str | None = None,
          extra: tuple | None = None, replace: dict | None = None) -> Path:
    """A caffemodel of ``table`` (every layer, blobs where it has them), optionally with one layer dropped,
    one extra layer appended or some blobs replaced."""
    blobs = {**blobs, **(replace or {})}
    layers = [encode_layer(la["name"], la["type"], blobs.get(la["name"], []), v1) for la in table
              if la["name"] != drop]
    if extra:
        layers.append(encode_layer(*extra, v1))
    path.write_bytes(caffemodel(layers))
    return path


@pytest.mark.parametrize("v1", [False, True], ids=["layer", "v1_layers"])
def test_imported_network_computes_the_released_layer_table(released, tmp_path, v1):
    table, blobs = released
    assert sum(la["type"] == "Convolution" for la in table) == 133
    path = write(tmp_path / "body135.caffemodel", table, blobs, v1)
    net, sha = caffe.import_network(path, model_cfg()["net"])
    assert count_parameters(net) == RELEASED_PARAMETERS
    assert sum(b.size for bs in blobs.values() for b in bs) == RELEASED_PARAMETERS
    assert len(sha) == 64
    gen = torch.Generator().manual_seed(1)
    for h, w in [(64, 64), (48, 80)]:
        x = torch.rand(1, 3, h, w, generator=gen) - 0.5  # the network's own input: BGR / 256 - 0.5
        with torch.no_grad():
            want = interpret(table, blobs, x)
            got = net.maps(net(x))
        assert want.shape == got.shape == (1, 439, h // 8, w // 8)
        assert want.abs().mean() > 1e-2  # not a vanishing signal
        assert (want - got).abs().max() <= 1e-4


def test_cli_writes_a_checkpoint_every_reader_accepts(released, tmp_path):
    table, blobs = released
    path = write(tmp_path / "pose_iter_464000.caffemodel", table, blobs)
    out = tmp_path / "body135.ckpt"
    start = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "src.import_caffe", f"caffemodel={path}", f"out={out}"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    seconds = time.perf_counter() - start
    assert run.returncode == 0, run.stderr[-2000:]
    import hashlib

    assert hashlib.sha256(path.read_bytes()).hexdigest() in run.stdout
    assert f"{RELEASED_PARAMETERS:,} parameters" in run.stdout
    assert seconds < 60, f"import of a {path.stat().st_size / 1e6:.0f} MB file took {seconds:.0f} s"
    # the readers: build_network (export, predict, evaluate), evaluate's input size, init_from
    net, cfg = checkpoint.build_network(None, out)
    assert cfg["backbone_init"] == "none" and count_parameters(net) == RELEASED_PARAMETERS
    w = torch.from_numpy(blobs["Mconv7_stage0_L1"][0])
    assert torch.equal(net.cm_stages[0].out.weight, w)
    assert checkpoint.read(out)["hyper_parameters"]["input_size"] == 480
    x = torch.rand(1, 3, 32, 48) - 0.5
    loaded = load_model(out, "cpu")
    with torch.no_grad():  # predict's network is folded (src.model.fold): the same maps to float rounding
        assert torch.allclose(loaded(x), net.maps(net(x)), atol=1e-5)
    fresh = instantiate({**model_cfg()["net"], "backbone_init": "none"})
    assert checkpoint.init_weights(fresh, out) == []
    assert torch.equal(fresh.cm_stages[0].out.weight, w)
    with pytest.raises(ValueError, match="model.init_from"):
        checkpoint.global_step(out)  # not a resumable training checkpoint: ckpt_path says to use init_from


def test_cli_error_is_one_line_naming_the_layer(released, tmp_path):
    table, blobs = released
    path = write(tmp_path / "cut.caffemodel", table, blobs)
    path.write_bytes(path.read_bytes()[:1_000_000])  # inside conv1_2 ... conv2_x
    run = subprocess.run([sys.executable, "-m", "src.import_caffe", f"caffemodel={path}",
                          f"out={tmp_path / 'x.ckpt'}"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode != 0 and not (tmp_path / "x.ckpt").exists()
    assert run.stderr.strip().startswith("error: ") and len(run.stderr.strip().splitlines()) == 1
    assert "truncated inside layer conv" in run.stderr and str(path) in run.stderr


@pytest.mark.parametrize("case", ["missing", "extra", "shape", "truncated", "body25"])
def test_bad_files_name_the_first_layer_that_disagrees(released, tmp_path, case):
    table, blobs = released
    path = tmp_path / f"{case}.caffemodel"
    if case == "missing":
        write(path, table, blobs, drop="Mprelu3_stage2_L2_1")
        match = "layer Mprelu3_stage2_L2_1 is missing"
    elif case == "extra":
        write(path, table, blobs, v1=True, extra=("Mconv1_stage4_L2_0", "Convolution", [np.zeros(3, "f4")]))
        match = "layer Mconv1_stage4_L2_0 .* is not in this network"
    elif case == "shape":
        write(path, table, blobs, replace={"conv4_4_CPM": [np.zeros((128, 256, 1, 1), "f4"),
                                                          np.zeros(128, "f4")]})
        match = r"layer conv4_4_CPM blob 0 .* shape \(128, 256, 1, 1\), the network expects \(128, 256, 3, 3"
    elif case == "truncated":
        write(path, table, blobs)
        path.write_bytes(path.read_bytes()[:-1000])  # the last layer loses its end
        match = "truncated inside layer Mconv7_stage0_L1"
    else:  # the official BODY_25 (shallow stages, 26 + 26x2 outputs): the first PAF conv is 96 wide
        cfg = {**model_cfg("shallow_wholebody")["net"], "layout": sized(26, 26).to_dict()}
        with torch.device("meta"):
            body25 = instantiate(cfg)
        shapes = body25.state_dict()
        layers = [encode_layer(name, "", [np.zeros(shapes[k].shape, "f4") for k in keys], False)
                  for name, keys in caffe.layer_map(body25).items()]
        path.write_bytes(caffemodel(layers))
        match = r"layer Mconv1_stage0_L2_0 blob 0 .* shape \(96, 128, 3, 3\)"
    with pytest.raises(caffe.CaffeError, match=match):
        caffe.import_network(path, model_cfg()["net"])
