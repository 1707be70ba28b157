"""predict: every model kind loads; people come back in original-image pixels; bad images are skipped."""

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from hydra import compose, initialize
from torch import nn

from bench.scenes import crowd
from src.core.checkpoint import build_network
from src.core.geometry import resize_for_eval
from src.export import export
from src.predict import predict
from src.targets import Targets

ROOT = Path(__file__).resolve().parents[1]
HEIGHT = 240


class FixedMaps(nn.Module):
    """A stand-in network answering with the ground-truth maps of the test image, for the full-size input
    and for the half-size one (a network with random weights would find nobody)."""

    def __init__(self, full: torch.Tensor, half: torch.Tensor):
        super().__init__()
        self.register_buffer("maps_full", full)
        self.register_buffer("maps_half", half)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.maps_full if x.shape[-1] == 8 * self.maps_full.shape[-1] else self.maps_half


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """A folder with two images of people (one repeated under a numeric name), a corrupt JPEG and a text
    file; a TorchScript model answering with the first image's ground-truth maps; the people's keypoints."""
    root = tmp_path_factory.mktemp("predict")
    images = root / "images"
    images.mkdir()
    image, people = crowd(2, (300, 400), seed=5)
    cv2.imwrite(str(images / "crowd.png"), image)
    cv2.imwrite(str(images / "000000000042.png"), image)
    (images / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (images / "notes.txt").write_text("not an image")
    net_in = resize_for_eval(image, HEIGHT)  # 240 x 320, no padding needed
    kp = torch.from_numpy(people.copy())[None]
    kp[..., :2] = kp[..., :2] * torch.from_numpy(net_in.scale) + torch.from_numpy(net_in.offset)
    maps = {}
    for name, s in (("full", 1.0), ("half", 0.5)):
        scaled = kp.clone()
        scaled[..., :2] = (kp[..., :2] + 0.5) * s - 0.5  # bilinear resize by s, pixel centres aligned
        maps[name] = Targets()(scaled, torch.ones(1, 135, dtype=torch.bool), None,
                               (int(240 * s), int(320 * s)))[0]
    model = root / "fixed.pt"
    torch.jit.script(FixedMaps(maps["full"], maps["half"])).save(str(model))
    return images, model, people


def _keypoints(path: Path) -> np.ndarray:
    doc = json.loads(path.read_text())
    assert doc["version"] == 1.3
    return np.array([p["pose_keypoints_2d"] for p in doc["people"]]).reshape(-1, 135, 3)


def _body_error(found: np.ndarray, people: np.ndarray) -> float:
    """Largest distance (px) of a body/foot point to the drawn person with the nearest nose; every point
    must be found and every drawn person matched once."""
    order = [int(np.argmin(np.linalg.norm(people[:, 0, :2] - f[0, :2], axis=1))) for f in found]
    assert sorted(order) == list(range(len(people)))
    assert (found[:, :25, 2] > 0).all()
    return float(np.linalg.norm(found[:, :25, :2] - people[order, :25, :2], axis=2).max())


def config(overrides: list[str]):
    """``conf/predict.yaml`` with ``overrides``, as ``python -m src.predict`` composes it."""
    with initialize(version_base="1.3", config_path="../conf"):
        return compose("predict", overrides=overrides)


def _run(model, images, out, **extra):
    args = [f"ckpt_path={model}", f"input={images}", f"out={out}", f"height={HEIGHT}", "progress=false"]
    return predict(config(args + [f"{k}={v}" for k, v in extra.items()]))


def test_people_in_original_pixels_and_bad_files_skipped(scene, tmp_path):
    images, model, people = scene
    summary = _run(model, images, tmp_path)
    assert summary == {"processed": 2, "skipped": 1, "people": 4, "out": str(tmp_path)}
    doc = json.loads((tmp_path / "crowd_keypoints.json").read_text())
    assert len(doc["people"]) == 2 and len(doc["people"][0]["hand_left_keypoints_2d"]) == 63
    assert _body_error(_keypoints(tmp_path / "crowd_keypoints.json"), people) < 3.0  # px; maps made at 0.8x
    records = json.loads((tmp_path / "results_wholebody.json").read_text())
    assert sorted({r["image_id"] for r in records}) == [1, 3]  # positions: not every stem is a number
    assert len(records[0]["keypoints"]) == 51 and len(records[0]["face_kpts"]) == 204
    listing = json.loads((tmp_path / "images.json").read_text())
    assert listing["skipped"][0]["file"].endswith("broken.jpg")
    overlay = cv2.imread(str(tmp_path / "crowd_overlay.jpg"))
    assert overlay.shape == (300, 400, 3)
    changed = np.abs(overlay.astype(int) - cv2.imread(str(images / "crowd.png"))).max(2) > 60
    assert changed.sum() > 500  # skeletons drawn (not JPEG noise)
    _run(model, images / "crowd.png", tmp_path / "png", overlay_format="png")
    lossless = cv2.imread(str(tmp_path / "png" / "crowd_overlay.png"))
    assert (lossless != cv2.imread(str(images / "crowd.png"))).any(axis=2).sum() > 500
    assert np.abs(lossless.astype(int) - overlay).mean() < 6  # the same noisy picture, JPEG-compressed


def test_multiscale_maps_come_back_to_the_same_pixels(scene, tmp_path):
    images, model, people = scene
    summary = _run(model, images / "000000000042.png", tmp_path, scales="[1.0,0.5]")
    assert summary["processed"] == 1 and summary["people"] == 2
    assert _body_error(_keypoints(tmp_path / "000000000042_keypoints.json"), people) < 3.0
    records = json.loads((tmp_path / "results_wholebody.json").read_text())
    assert {r["image_id"] for r in records} == {42}  # a numeric stem is the COCO image id


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    with initialize(version_base="1.3", config_path="../conf"):
        model_cfg = compose("export", overrides=["model=tiny"]).model
    net, cfg = build_network(model_cfg)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.ckpt"
    torch.save({"state_dict": {f"net.{k}": v for k, v in net.state_dict().items()},
                "hyper_parameters": {"net": cfg}}, path)
    return path


def test_checkpoint_and_onnx_models_run(scene, tiny_checkpoint, tmp_path):
    images, _, _ = scene
    onnx_file = tmp_path / "tiny.onnx"
    export(None, "onnx", onnx_file, ckpt_path=tiny_checkpoint, check_sizes=[[240, 320]])
    for model in (tiny_checkpoint, onnx_file):
        out = tmp_path / model.suffix[1:]
        summary = _run(model, images / "crowd.png", out)
        assert summary["processed"] == 1
        assert json.loads((out / "crowd_keypoints.json").read_text())["version"] == 1.3


def test_bad_arguments_are_named(scene, tmp_path):
    images, model, _ = scene
    with pytest.raises(FileNotFoundError, match="ckpt_path: no file"):
        _run(tmp_path / "none.onnx", images, tmp_path)
    (tmp_path / "weights.bin").write_bytes(b"0")
    with pytest.raises(ValueError, match="neither a checkpoint"):
        _run(tmp_path / "weights.bin", images, tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no images"):
        _run(model, tmp_path / "empty", tmp_path)
    with pytest.raises(ValueError, match="give input="):
        predict(config([f"ckpt_path={model}"]))
    with pytest.raises(ValueError, match="overlay_format must be one of \\['jpg', 'png'\\], got 'gif'"):
        _run(model, images, tmp_path / "gif", overlay_format="gif")
    assert not (tmp_path / "gif").exists()  # refused before anything is written


def test_cli_reports_skips_and_fails_when_nothing_is_readable(scene, tmp_path):
    images, model, _ = scene
    cmd = [sys.executable, "-m", "src.predict", f"ckpt_path={model}", f"out={tmp_path}", f"height={HEIGHT}"]
    ok = subprocess.run(cmd + [f"input={images}"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert "2 images, 4 people, 1 skipped" in ok.stdout and "broken.jpg" in ok.stderr
    assert "deprecated" not in ok.stderr
    bad = subprocess.run(cmd + [f"input={images / 'broken.jpg'}"], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert bad.returncode != 0 and "no image could be read" in bad.stderr


def test_cli_help_and_the_deprecated_model_argument(scene, tmp_path):
    images, model, _ = scene
    helped = subprocess.run([sys.executable, "-m", "src.predict", "--help"], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert helped.returncode == 0 and "Usage: python -m src.predict ckpt_path=MODEL" in helped.stdout
    assert "peak_threshold" in helped.stdout  # the decoder's settings are listed
    old = subprocess.run([sys.executable, "-m", "src.predict", f"model={model}", f"out={tmp_path}",
                          f"input={images / 'crowd.png'}", f"height={HEIGHT}", "decoder.peak_threshold=0.2"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert old.returncode == 0, old.stderr[-2000:]
    assert "model=FILE is deprecated" in old.stderr and "1 images, 2 people" in old.stdout


def _video(path: Path, frames: list[np.ndarray]) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, frames[0].shape[1::-1])
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def test_video_frames_are_named_as_openpose_names_them(scene, tmp_path):
    images, model, people = scene
    frame = cv2.imread(str(images / "crowd.png"))
    clip = _video(tmp_path / "clip.avi", [frame] * 3)
    summary = _run(model, clip, tmp_path / "out")
    assert summary["processed"] == 3 and summary["people"] == 6 and not summary["interrupted"]
    names = sorted(p.name for p in (tmp_path / "out").glob("*_keypoints.json"))
    assert names == [f"clip_{i:012d}_keypoints.json" for i in range(3)]
    assert _body_error(_keypoints(tmp_path / "out" / names[2]), people) < 3.0
    overlay = cv2.VideoCapture(str(tmp_path / "out" / "clip_overlay.mp4"))
    assert int(overlay.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    ok, first = overlay.read()
    assert ok and first.shape == frame.shape


def test_ctrl_c_keeps_every_finished_frame(scene, tmp_path, monkeypatch):
    images, model, _ = scene
    clip = _video(tmp_path / "clip.avi", [cv2.imread(str(images / "crowd.png"))] * 4)
    from src.inference import Inference

    real, calls = Inference.image, []

    def interrupted(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Inference, "image", interrupted)
    summary = _run(model, clip, tmp_path / "out")
    assert summary["interrupted"] and summary["processed"] == 2
    assert len(list((tmp_path / "out").glob("clip_*_keypoints.json"))) == 2
    overlay = cv2.VideoCapture(str(tmp_path / "out" / "clip_overlay.mp4"))
    assert int(overlay.get(cv2.CAP_PROP_FRAME_COUNT)) == 2


def test_bad_video_inputs_are_named(scene, tmp_path):
    _, model, _ = scene
    (tmp_path / "notes.mp4").write_text("not a video")
    with pytest.raises(ValueError, match="notes.mp4: not a video"):
        _run(model, tmp_path / "notes.mp4", tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="camera 9 cannot be opened"):
        _run(model, 9, tmp_path / "out")
