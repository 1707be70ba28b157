"""Bad input and untrusted files: nothing silently wrong, nothing executed, every error names its file."""

import pathlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from src import checkpoint
from src.checkpoint import CheckpointError
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
