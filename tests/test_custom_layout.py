"""A keypoint set of one's own, end to end without editing Python: a COCO file -> its layout -> shards of its
K points -> training -> evaluation equal to pycocotools -> export that carries the layout -> predict."""

import contextlib
import io
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from datamodules.wholebody import WholeBodyDataModule
from sharding.coco import CocoKeypoints
from sharding.writer import build_split
from src.core.skeleton import Layout
from src.layout import layout_from_coco

ROOT = Path(__file__).resolve().parents[1]
NAMES = ["head", "left_hand", "right_hand", "left_foot", "right_foot"]
SKELETON = [[1, 2], [1, 3], [1, 4], [1, 5]]  # 1-based, as COCO files write it
SIGMAS = [0.05, 0.06, 0.06, 0.08, 0.08]


def _coco_file(folder: Path, images: int = 3) -> Path:
    """Star-shaped figures drawn on noise, one or two per image, in a COCO keypoint file."""
    rng = np.random.default_rng(0)
    anns, infos = [], []
    for i in range(1, images + 1):
        img = rng.integers(0, 60, (96, 128, 3), np.uint8)
        for j in range(1 + i % 2):
            cx, cy = 36 + 56 * j, 48
            pts = [(cx, cy - 30), (cx - 20, cy), (cx + 20, cy), (cx - 12, cy + 30), (cx + 12, cy + 30)]
            kp = []
            for k, (x, y) in enumerate(pts):
                cv2.circle(img, (x, y), 4, (40 + 40 * k, 255 - 40 * k, 200), -1)
                kp += [x, y, 2]
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": 1, "iscrowd": 0,
                         "bbox": [cx - 24, cy - 34, 48, 68], "num_keypoints": 5, "keypoints": kp})
        cv2.imwrite(str(folder / f"{i:03d}.jpg"), img)
        infos.append({"id": i, "file_name": f"{i:03d}.jpg", "width": 128, "height": 96})
    ann = folder / "ann.json"
    ann.write_text(json.dumps({"images": infos, "annotations": anns, "categories": [
        {"id": 1, "name": "star", "keypoints": NAMES, "skeleton": SKELETON}]}))
    return ann


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> dict:
    """The COCO file, its layout in a ``layout/`` config folder, and its shards (train and val)."""
    root = tmp_path_factory.mktemp("custom")
    ann = _coco_file(root)
    layout, _ = layout_from_coco(json.loads(ann.read_text()), sigmas=SIGMAS, target_sigma=4.0)
    (root / "conf" / "layout").mkdir(parents=True)
    layout.save(root / "conf" / "layout" / "star.yaml")
    conv = CocoKeypoints(train={"ann": ann, "images": root}, val={"ann": ann, "images": root},
                         layout=str(root / "conf" / "layout" / "star.yaml"))
    shards = root / "shards"
    manifests = {split: build_split("custom", conv, split, shards)[1] for split in ("train", "val")}
    return {"root": root, "ann": ann, "layout": layout, "shards": shards, "manifests": manifests}


def test_shards_hold_the_layouts_points_and_name_it(made):
    layout, manifest = made["layout"], made["manifests"]["train"]
    assert manifest["layout"] == {"name": "star", "digest": layout.digest}
    assert manifest["samples"] == 3 and manifest["people"] == 5
    gt = json.loads((made["shards"] / "custom" / "val" / "gt.json").read_text())
    assert gt["categories"][0]["keypoints"] == NAMES and gt["categories"][0]["skeleton"] == SKELETON
    assert all(len(a["keypoints"]) == 15 and a["area"] == 48 * 68 for a in gt["annotations"])
    assert layout.flip_pairs == [(1, 2), (3, 4)]  # left_/right_ derived from the names


def test_the_loader_delivers_k_point_batches_and_refuses_another_layout(made):
    dm = WholeBodyDataModule({"custom": {"probability": 1.0, "policy": "image"}},
                             {"custom": {"policy": "body"}}, root=str(made["shards"]), crop=64, batch_size=2,
                             num_workers=0, val_num_workers=0, layout=made["layout"])
    batch = next(iter(dm.train_dataset()))
    assert batch["keypoints"].shape[2:] == (5, 3) and batch["labelled"].shape == (2, 5)
    val = next(iter(dm.val_dataloader()))
    assert val["keypoints"].shape[2:] == (5, 3)
    other = WholeBodyDataModule({"custom": {"probability": 1.0, "policy": "image"}}, root=str(made["shards"]),
                                crop=64, num_workers=0)  # the default layout: BODY_135
    with pytest.raises(ValueError, match=r"hold layout 'star' \(.*\), the run's layout is 'BODY_135'"):
        other.resolve()


def _train_cfg(made: dict, run_dir: Path, *overrides: str):
    with initialize_config_dir(version_base="1.3", config_dir=str(ROOT / "conf")):
        return compose("train", overrides=[
            "+experiment=overfit", "layout=star", f"hydra.searchpath=[file://{made['root'] / 'conf'}]",
            f"data.root={made['shards']}", f"run_dir={run_dir}", "logger=csv", "model.input_size=64",
            "data.batch_size=2", "data.num_workers=0", "data.val_num_workers=0", "trainer.max_steps=2",
            "trainer.val_check_interval=2", "trainer.log_every_n_steps=1",
            "trainer.enable_model_summary=false", "~callbacks.progress",
            *overrides])


def test_a_custom_layout_trains_validates_evaluates_and_exports(made, tmp_path, capsys):
    from src.evaluate import evaluate_checkpoint
    from src.export import export
    from src.inference import load_model
    from src.train import train

    cfg = _train_cfg(made, tmp_path / "run", "trainer.max_steps=60", "trainer.val_check_interval=60",
                     "data.rotate=0")
    assert cfg.layout.name == "star" and cfg.callbacks.best.monitor == "val/AP"
    out = train(cfg)
    assert out["global_step"] == 60 and set(out["metrics"]) == {"keypoints"}
    with open(tmp_path / "run" / "metrics.csv") as f:
        header = f.readline()
    assert "val/keypoints/AP" in header and "val/AP" in header and "train/loss/keypoints" in header
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert load_model(ckpt).layout == made["layout"]  # from the checkpoint alone

    # evaluate: the records it scored, scored again by pycocotools with the layout's sigmas, give its AP
    with initialize_config_dir(version_base="1.3", config_dir=str(ROOT / "conf")):
        ecfg = compose("evaluate", overrides=[f"ckpt_path={ckpt}", f"gt={made['ann']}",
                                              f"images={made['root']}", f"out={tmp_path / 'm.json'}",
                                              f"pred_out={tmp_path / 'pred.json'}", "height=64",
                                              "decoder.peak_threshold=0.001", "decoder.min_parts=1",
                                              "decoder.fallback_min_parts=1"])
    metrics = evaluate_checkpoint(ecfg)
    preds = json.loads((tmp_path / "pred.json").read_text())
    assert preds and all(len(p["keypoints"]) == 15 and set(p) == {"image_id", "category_id", "keypoints",
                                                                   "score"} for p in preds)
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(made["ann"]))
        for a in gt.dataset["annotations"]:
            a.setdefault("area", a["bbox"][2] * a["bbox"][3])
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes(preds), "keypoints")
        ev.params.kpt_oks_sigmas = np.array(SIGMAS)
        ev.evaluate(), ev.accumulate(), ev.summarize()
    assert metrics["keypoints"]["AP"] == pytest.approx(max(ev.stats[0], 0.0), abs=1e-6)

    # export: the file carries its layout, so predict needs no config
    meta = export(None, "onnx", tmp_path / "star.onnx", str(ckpt), [[64, 64]])
    assert Layout.of(meta["layout"]) == made["layout"] and meta["output"]["shape"][1] == 5 + 2 * 4
    assert load_model(tmp_path / "star.onnx").layout == made["layout"]
    (tmp_path / "star.onnx.json").unlink()  # embedded in the ONNX file itself, not only beside it
    assert load_model(tmp_path / "star.onnx").layout == made["layout"]


def test_predict_writes_the_layouts_points_from_an_export(made, tmp_path):
    from src.export import export
    from src.predict import predict

    with initialize_config_dir(version_base="1.3", config_dir=str(ROOT / "conf")):
        mcfg = compose("train", overrides=["model=tiny", "layout=star", "model.input_size=64",
                                           f"hydra.searchpath=[file://{made['root'] / 'conf'}]"]).model
    torch.manual_seed(0)
    export(mcfg, "torchscript", tmp_path / "star.pt", None, [[64, 64]])
    with initialize_config_dir(version_base="1.3", config_dir=str(ROOT / "conf")):
        pcfg = compose("predict", overrides=[f"ckpt_path={tmp_path / 'star.pt'}", f"input={made['root']}",
                                             f"out={tmp_path / 'out'}", "height=64", "progress=false"])
    predict(pcfg)
    doc = json.loads((tmp_path / "out" / "001_keypoints.json").read_text())
    assert doc["layout"] == "star"
    assert all(len(p["pose_keypoints_2d"]) == 15 and p["face_keypoints_2d"] == [] for p in doc["people"])
    assert (tmp_path / "out" / "results_keypoints.json").is_file()


def test_adding_and_replacing_a_source_on_the_command_line():
    """The one documented form (docs/custom_keypoints.md): `+data.sources.NAME={...}` adds a source; a
    preset's own source is dropped by its probability 0."""
    with initialize_config_dir(version_base="1.3", config_dir=str(ROOT / "conf")):
        cfg = compose("train", overrides=["+experiment=smoke", "data=custom",
                                          "data.sources.custom.probability=0",
                                          '+data.sources.more={urls: "/x/more-{000000..000009}.tar", '
                                          "probability: 1.0, policy: body}"])
    sources = cfg.data.sources
    assert sources.more.urls == "/x/more-{000000..000009}.tar" and sources.more.probability == 1.0
    assert sources.custom.probability == 0
