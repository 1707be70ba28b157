"""Bad input and untrusted files: nothing silently wrong, nothing executed, every error names its file."""

import json
import os
import pathlib
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from src.core import checkpoint
from src.core.checkpoint import CheckpointError
from src.evaluate import evaluate_checkpoint
from src.export import export
from src.predict import predict
from src.train import train

ROOT = Path(__file__).resolve().parents[1]
CONF = str(ROOT / "conf")


def compose_cfg(name: str, *overrides: str):
    with initialize_config_dir(version_base="1.3", config_dir=CONF):
        return compose(name, overrides=list(overrides))


class Planted:
    """Unpickling this creates ``path``: the stand-in for a checkpoint that runs code when loaded."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return pathlib.Path.touch, (pathlib.Path(self.path),)


@pytest.fixture
def planted(tmp_path) -> tuple[Path, Path]:
    """(a checkpoint whose unpickling would create a file, that file)."""
    flag = tmp_path / "code_ran"
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "global_step": 3, "hyper_parameters": {"input_size": 64},
                "payload": Planted(flag)}, path)
    return path, flag


def _one_line(err: BaseException, path: Path) -> str:
    text = str(err)
    assert "\n" not in text and str(path) in text, text
    return text


def _image(tmp_path: Path) -> Path:
    path = tmp_path / "img.png"
    cv2.imwrite(str(path), np.full((64, 64, 3), 90, np.uint8))
    return path


def test_planted_checkpoint_runs_nothing_in_any_entry_point(planted, tmp_path):
    path, flag = planted
    attempts = {
        "train": lambda: train(compose_cfg("train", "+experiment=smoke", "model=tiny", f"ckpt_path={path}",
                                           f"run_dir={tmp_path / 'run'}", "logger=csv",
                                           f"data.root={tmp_path / 'none'}")),
        "train init_from": lambda: train(compose_cfg("train", "+experiment=smoke", "model=tiny",
                                                     f"+model.init_from={path}", f"run_dir={tmp_path / 'r2'}",
                                                     "logger=csv", f"data.root={tmp_path / 'none'}")),
        "evaluate": lambda: evaluate_checkpoint(compose_cfg("evaluate", f"ckpt_path={path}",
                                                            f"out={tmp_path / 'm.json'}")),
        "export": lambda: export(None, "onnx", tmp_path / "x.onnx", ckpt_path=path),
        "predict": lambda: predict(compose_cfg("predict", f"ckpt_path={path}", f"input={_image(tmp_path)}",
                                               f"out={tmp_path / 'pred'}", "progress=false")),
    }
    for name, attempt in attempts.items():
        with pytest.raises(CheckpointError) as err:
            attempt()
        text = _one_line(err.value, path)
        assert "refused" in text and "trust_checkpoint=true" in text, (name, text)
        assert not flag.exists(), f"{name}: unpickling ran code"


def test_trust_checkpoint_reads_the_full_pickle(planted):
    path, flag = planted
    with checkpoint.trusted():
        assert checkpoint.read(path)["global_step"] == 3
    assert flag.exists()  # the user vouched for it: the full unpickler ran
    assert not checkpoint.trusting()


def test_unreadable_checkpoints_are_one_line_naming_the_path(tmp_path):
    good = tmp_path / "good.ckpt"
    torch.save({"state_dict": {"net.backbone.w": torch.zeros(4000)}}, good)
    text = tmp_path / "notes.ckpt"
    text.write_text("not a checkpoint")
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    empty = tmp_path / "empty.ckpt"
    empty.write_bytes(b"")
    listed = tmp_path / "list.ckpt"
    torch.save([1, 2], listed)
    for path, says in ((text, "not a readable checkpoint"), (cut, "truncated"), (empty, "not a readable"),
                       (listed, "expected a dict")):
        with pytest.raises(CheckpointError) as err:
            checkpoint.read(path)
        assert says in _one_line(err.value, path)
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        predict(compose_cfg("predict", f"ckpt_path={text}", f"input={_image(tmp_path)}",
                            f"out={tmp_path / 'pred'}", "progress=false"))


# -- images: one reader (src/core/image_io.py) for shards, loader, predict and evaluate ---------------------
def _photo(tmp_path: Path) -> bytes:
    rng = np.random.default_rng(0)
    image = cv2.GaussianBlur(rng.integers(0, 255, (392, 520, 3), np.uint8), (5, 5), 0)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])
    return buf.tobytes()


def test_truncated_and_corrupt_images_are_refused_by_name(tmp_path):
    from datamodules.samples import BadSample, decode
    from sharding.people import SkipRecord, read_image
    from src.core import image_io

    data = _photo(tmp_path)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[: len(data) * 4 // 10])
    assert cv2.imread(str(cut)) is not None  # OpenCV alone decodes it, grey below the cut
    ok, png = cv2.imencode(".png", np.zeros((40, 40, 3), np.uint8))
    cut_png = tmp_path / "cut.png"
    cut_png.write_bytes(png.tobytes()[:-20])
    for path, says in ((cut, "truncated JPEG"), (cut_png, "truncated PNG")):
        with pytest.raises(image_io.ImageError, match=says) as err:
            image_io.read(path)
        assert str(path) in str(err.value)
        with pytest.raises(SkipRecord) as skip:  # the shard builder
            read_image(path)
        assert skip.value.reason == "unreadable_image" and says in skip.value.detail
        with pytest.raises(BadSample, match=says):  # the loader
            decode({"__key__": "k", path.suffix[1:]: path.read_bytes(), "json": b'{"people": []}'})
    exif_thumb = data[:2] + b"\xff\xe1\x00\x10Exif\x00\x00\xff\xd8\xff\xd9\x00\x00" + data[2:]
    assert image_io.decode(exif_thumb + b"trailer", "ok.jpg").shape == (392, 520, 3)  # thumbnail EOI, trailer


def test_predict_lists_truncated_images_as_skipped(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    data = _photo(tmp_path)
    (folder / "whole.jpg").write_bytes(data)
    (folder / "cut.jpg").write_bytes(data[: len(data) * 4 // 10])
    model = tmp_path / "tiny.ckpt"
    from src.core.checkpoint import build_network
    net, cfg = build_network(compose_cfg("export", "model=tiny").model)
    torch.save({"state_dict": {f"net.{k}": v for k, v in net.state_dict().items()},
                "hyper_parameters": {"net": cfg}}, model)
    summary = predict(compose_cfg("predict", f"ckpt_path={model}", f"input={folder}",
                                  f"out={tmp_path / 'out'}", "progress=false", "height=64", "overlay=false"))
    assert summary["processed"] == 1 and summary["skipped"] == 1
    (skipped,) = json.loads((tmp_path / "out" / "images.json").read_text())["skipped"]
    assert skipped["file"].endswith("cut.jpg") and "truncated JPEG" in skipped["reason"]


# -- outputs checked before work; one-line errors from every entry point ------------------------------------
def test_output_paths_are_checked_before_any_work(tmp_path):
    from src.core.cli import OutputError, ensure_writable

    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="is a file") as err:
        export(None, "onnx", blocker / "sub" / "model.onnx", ckpt_path=tmp_path / "absent.ckpt")
    assert "\n" not in str(err.value)  # refused before the (absent) checkpoint is even looked at
    with pytest.raises(OutputError, match="is a file"):
        predict(compose_cfg("predict", f"ckpt_path={tmp_path / 'absent.ckpt'}", f"input={_image(tmp_path)}",
                            f"out={blocker / 'pred'}", "progress=false"))
    with pytest.raises(OutputError, match="is a file"):
        evaluate_checkpoint(compose_cfg("evaluate", f"ckpt_path={tmp_path / 'absent.ckpt'}",
                                        f"out={blocker / 'm.json'}"))
    with pytest.raises(OutputError, match="expected a file name"):
        ensure_writable(tmp_path, "out")
    assert ensure_writable(tmp_path / "new" / "deeper", "out", folder=True).is_dir()


def _cli(*args, cwd=ROOT, env=None):
    base = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    env = {**base, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


def test_cli_errors_are_one_line_unless_debugging(planted, tmp_path):
    path, flag = planted
    args = ["src.predict", f"ckpt_path={path}", f"input={_image(tmp_path)}", f"out={tmp_path / 'out'}"]
    bad = _cli(*args)
    assert bad.returncode != 0 and not flag.exists()
    lines = [ln for ln in bad.stderr.splitlines() if ln.strip()]
    assert lines[-1].startswith("error: ckpt_path=") and "trust_checkpoint=true" in lines[-1]
    assert "Traceback" not in bad.stderr
    for style in (["--debug"], []):
        env = {} if style else {"HYDRA_FULL_ERROR": "1"}
        loud = _cli(*args[:1], *style, *args[1:], env=env)
        assert loud.returncode != 0 and "Traceback" in loud.stderr and not flag.exists()


def test_export_cli_writes_only_its_output(tmp_path):
    out = tmp_path / "models" / "tiny.pt"
    done = _cli("src.export", "model=tiny", "format=torchscript", f"out={out}", "check_sizes=[[64,64]]",
                cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models"]  # no logs/exports/export.log anywhere
    assert sorted(p.name for p in out.parent.iterdir()) == ["tiny.pt", "tiny.pt.json"]
    (tmp_path / "blocker").write_text("x")
    refused = _cli("src.export", "model=tiny", f"out={tmp_path / 'blocker' / 'm.onnx'}", cwd=tmp_path)
    assert refused.returncode != 0 and refused.stderr.strip().splitlines()[-1].startswith("error: out=")
