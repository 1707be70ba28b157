"""The shard writer and `python -m sharding`: layout, manifests, atomic writes, skip-if-unchanged, bad input
(skipped and reported, or a clear error with nothing written), and the synthetic default."""

import functools
import hashlib
import http.server
import io
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
import webdataset as wds

from sharding.coco import CocoBody
from sharding.people import InputError
from sharding.synthetic_source import split_counts
from sharding.writer import Settings, build_split
from src.core.record import KEYPOINTS, Record, read_meta

ROOT = Path(__file__).resolve().parents[1]


def make_coco(folder: Path, n: int = 5, size=(64, 48)) -> Path:
    """``n`` small JPEGs, each with two people (17 keypoints) and, on image 0, a crowd region."""
    folder.mkdir(parents=True, exist_ok=True)
    w, h = size
    rng = np.random.default_rng(0)
    images, anns = [], []
    for i in range(n):
        cv2.imwrite(str(folder / f"{i:04d}.jpg"), rng.integers(0, 255, (h, w, 3), np.uint8))
        images.append({"id": i + 1, "file_name": f"{i:04d}.jpg", "width": w, "height": h})
        for j in range(2):
            kp = np.zeros((17, 3))
            kp[:5] = [[10 + 20 * j + k, 10 + k, 2] for k in range(5)]
            anns.append({"id": 100 * i + j, "image_id": i + 1, "category_id": 1, "iscrowd": 0,
                         "bbox": [5 + 20 * j, 5, 18, 30], "area": 400, "num_keypoints": 5,
                         "keypoints": kp.reshape(-1).tolist(),
                         "segmentation": [[5, 5, 23, 5, 23, 35, 5, 35]]})
    anns.append({"id": 9999, "image_id": 1, "category_id": 1, "iscrowd": 1, "bbox": [40, 30, 10, 10],
                 "area": 100, "num_keypoints": 0, "keypoints": [0] * 51,
                 "segmentation": [[40, 30, 50, 30, 50, 40, 40, 40]]})
    (folder / "ann.json").write_text(json.dumps({"images": images, "annotations": anns,
                                                 "categories": [{"id": 1, "name": "person"}]}))
    return folder


def coco(folder: Path) -> CocoBody:
    return CocoBody(train={"ann": folder / "ann.json", "images": folder},
                    val={"ann": folder / "ann.json", "images": folder})


def edit_ann(folder: Path, fn) -> None:
    data = json.loads((folder / "ann.json").read_text())
    fn(data)
    (folder / "ann.json").write_text(json.dumps(data))


def test_layout_manifest_and_webdataset(tmp_path):
    src = make_coco(tmp_path / "raw")
    status, m = build_split("toy", coco(src), "train", tmp_path / "out", Settings(max_count=2))
    split_dir = tmp_path / "out" / "toy" / "train"
    assert status == "built"
    names = [s["name"] for s in m["shards"]]
    assert names == [f"toy-train-{i:06d}.tar" for i in range(3)]
    assert sorted(p.name for p in split_dir.iterdir()) == sorted(names + ["manifest.json"])  # train: no gt
    assert json.loads((split_dir / "manifest.json").read_text()) == m
    assert (m["samples"], m["people"], m["ignore_masks"]) == (5, 10, 1)
    assert m["labelled_keypoints"]["body"] == 50 and m["labelled_keypoints"]["face"] == 0
    assert m["converter"] == "sharding.coco.CocoBody" and m["converter_version"] == CocoBody.version
    assert len(m["fingerprint"]) == 64 and m["skipped"]["count"] == 0
    for s in m["shards"]:
        assert hashlib.sha256((split_dir / s["name"]).read_bytes()).hexdigest() == s["sha256"]
    # the manifest's brace pattern is what the loader takes; every tar reads back through webdataset
    url = str(split_dir / m["url"])
    got = list(wds.WebDataset(url, shardshuffle=False))
    assert len(got) == 5 == sum(s["samples"] for s in m["shards"])
    assert {s["__key__"] for s in got} == {f"toy-{i}" for i in range(1, 6)}
    for s in got:
        assert all("keypoints" not in p for p in json.loads(s["json"])["people"])  # they are in the .npy
        assert np.load(io.BytesIO(s[KEYPOINTS])).dtype == np.float32
        meta = read_meta(s)
        assert set(meta) >= {"image_id", "file_name", "width", "height", "source", "groups", "people"}
        assert meta["source"] == "toy" and meta["groups"] == ["body"]
        assert s["jpg"] == (src / meta["file_name"]).read_bytes()
        assert ("ignore.png" in s) == (meta["image_id"] == 1)
        for p in meta["people"]:
            assert set(p) == {"id", "keypoints", "bbox", "area", "center", "scale"}
            assert np.asarray(p["keypoints"]).shape == (135, 3)
    crowd = next(s for s in got if "ignore.png" in s)
    mask = cv2.imdecode(np.frombuffer(crowd["ignore.png"], np.uint8), cv2.IMREAD_UNCHANGED)
    assert mask.shape == (48, 64) and mask[35, 45] == 255 and mask[20, 10] == 0


def test_shards_stream_over_pipe_and_http(tmp_path):
    """The scale-out addressing the loader uses: brace patterns through ``pipe:`` and over http(s)."""
    src = make_coco(tmp_path / "raw")
    out = tmp_path / "out"
    _, m = build_split("toy", coco(src), "train", out, Settings(max_count=2))
    local = list(wds.WebDataset(str(out / "toy" / "train" / m["url"]), shardshuffle=False))
    keys = [s["__key__"] for s in local]
    piped = wds.WebDataset(f"pipe:cat {out}/toy/train/{m['url']}", shardshuffle=False)
    assert [s["__key__"] for s in piped] == keys
    if not shutil.which("curl"):  # webdataset fetches http(s) with curl
        return
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(out))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/toy/train/{m['url']}"
        got = list(wds.WebDataset(url, shardshuffle=False))
    finally:
        server.shutdown()
    assert [s["__key__"] for s in got] == keys and got[0]["jpg"] == local[0]["jpg"]


def test_val_writes_gt_json(tmp_path):
    src = make_coco(tmp_path / "raw", n=3)
    build_split("toy", coco(src), "val", tmp_path / "out")
    gt = json.loads((tmp_path / "out" / "toy" / "val" / "gt.json").read_text())
    assert len(gt["images"]) == 3 and len(gt["annotations"]) == 7  # 6 people + the crowd region
    crowd = [a for a in gt["annotations"] if a["iscrowd"]]
    assert len(crowd) == 1 and crowd[0]["bbox"] == [40, 30, 10, 10] and crowd[0]["num_keypoints"] == 0
    a = gt["annotations"][0]
    assert a["iscrowd"] == 0 and a["num_keypoints"] == 5 and a["area"] == 400 and a["bbox"] == [5, 5, 18, 30]
    assert a["keypoints"][:3] == [10, 10, 2] and len(a["keypoints"]) == 51 and len(a["face_kpts"]) == 204
    assert len({x["id"] for x in gt["annotations"]}) == 7


def test_rerun_skips_unchanged_and_rebuilds_on_change(tmp_path):
    src = make_coco(tmp_path / "raw")
    out = tmp_path / "out"
    assert build_split("toy", coco(src), "val", out)[0] == "built"
    assert build_split("toy", coco(src), "val", out)[0] == "unchanged"
    os.utime(src / "ann.json", ns=(1, 1))  # an input's mtime changed
    assert build_split("toy", coco(src), "val", out)[0] == "built"
    assert build_split("toy", coco(src), "val", out, Settings(max_count=2))[0] == "built"  # settings
    conv = coco(src)
    conv.version = "999"  # converter version bumped
    assert build_split("toy", conv, "val", out, Settings(max_count=2))[0] == "built"
    (out / "toy" / "val" / "toy-val-000000.tar").unlink()  # a shard went missing
    status, m = build_split("toy", conv, "val", out, Settings(max_count=2))
    assert status == "built" and len(m["shards"]) == 3
    # a rebuild with fewer shards leaves no stale tar behind
    status, m = build_split("toy", conv, "val", out, Settings(max_count=10))
    assert sorted(p.name for p in (out / "toy" / "val").glob("*.tar")) == ["toy-val-000000.tar"]


class _Interrupted(CocoBody):
    """Stops the run (like Ctrl-C) after ``after`` records."""

    after = 3

    def convert(self, img_id):
        self.after -= 1
        if self.after < 0:
            raise KeyboardInterrupt
        return super().convert(img_id)


def test_interrupted_run_leaves_previous_build_and_no_partial_files(tmp_path):
    src = make_coco(tmp_path / "raw")
    out = tmp_path / "out"
    split_dir = out / "toy" / "val"
    conv = _Interrupted(val={"ann": src / "ann.json", "images": src})
    with pytest.raises(KeyboardInterrupt):
        build_split("toy", conv, "val", out, Settings(max_count=1))
    assert not split_dir.exists() and list((out / "toy").iterdir()) == []  # nothing, not even staging
    _, first = build_split("toy", coco(src), "val", out, Settings(max_count=1))
    before = {p.name: p.read_bytes() for p in split_dir.iterdir()}
    edit_ann(src, lambda d: d["annotations"].pop(0))  # inputs change, the rebuild is interrupted
    conv = _Interrupted(val={"ann": src / "ann.json", "images": src})
    with pytest.raises(KeyboardInterrupt):
        build_split("toy", conv, "val", out, Settings(max_count=1))
    assert {p.name: p.read_bytes() for p in split_dir.iterdir()} == before
    assert [p.name for p in (out / "toy").iterdir()] == ["val"]
    # a hard kill leaves a hidden staging folder of *.tmp files: invisible to loaders, cleared by the next run
    (out / "toy" / ".val.staging").mkdir()
    (out / "toy" / ".val.staging" / "toy-val-000000.tar.tmp").write_bytes(b"half")
    assert build_split("toy", coco(src), "val", out, Settings(max_count=1))[0] == "built"
    assert [p.name for p in (out / "toy").iterdir()] == ["val"]


# -- bad input: the record is skipped and reported ------------------------------------------------------
def _corrupt(src):
    (src / "0000.jpg").write_bytes(b"not a jpeg at all")


def _truncated(src):
    data = (src / "0001.jpg").read_bytes()
    (src / "0001.jpg").write_bytes(data[: len(data) // 2])


def _wrong_length(src):
    edit_ann(src, lambda d: d["annotations"][2].update(keypoints=[1, 2, 2] * 16))


def _far_outside(src):
    edit_ann(src, lambda d: d["annotations"][2]["keypoints"].__setitem__(0, 5000))


def _unknown_image(src):
    edit_ann(src, lambda d: d["annotations"].append(dict(d["annotations"][0], id=777, image_id=424242)))


def _missing_file(src):
    (src / "0003.jpg").unlink()


def _box_outside(src):
    edit_ann(src, lambda d: d["annotations"][2].update(bbox=[5000, 5000, 100, 100]))


def _box_nan(src):
    edit_ann(src, lambda d: d["annotations"][2].update(bbox=[10, 10, -50, float("nan")]))


def _box_empty(src):
    edit_ann(src, lambda d: d["annotations"][2].update(bbox=[10, 10, -50, 20]))


def _box_of_a_crowd_infinite(src):
    edit_ann(src, lambda d: d["annotations"][-1].update(bbox=[40, 30, float("inf"), 10]))


def _area_nan(src):
    edit_ann(src, lambda d: d["annotations"][2].update(area=float("nan")))


def _keypoint_text(src):
    edit_ann(src, lambda d: d["annotations"][2]["keypoints"].__setitem__(0, "abc"))


def _keypoint_nan(src):
    edit_ann(src, lambda d: d["annotations"][2]["keypoints"].__setitem__(0, float("nan")))


def strict_json(text: str):
    """``json.loads`` that refuses NaN and Infinity (invalid in strict JSON)."""
    def refuse(name):
        raise ValueError(f"non-finite number {name} in JSON")
    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize("damage, reason, item", [
    (_corrupt, "unreadable_image", "0000.jpg"),
    (_truncated, "unreadable_image", "0001.jpg"),
    (_wrong_length, "wrong_keypoint_count", "image 2"),
    (_far_outside, "far_outside_image", "image 2"),
    (_unknown_image, "unknown_image_id", "annotation 777"),
    (_missing_file, "missing_file", "0003.jpg"),
    (_box_outside, "box_outside_image", "image 2 (0001.jpg) annotation 100"),
    (_box_nan, "non_finite_box", "image 2 (0001.jpg) annotation 100"),
    (_box_empty, "empty_box", "annotation 100"),
    (_box_of_a_crowd_infinite, "non_finite_box", "annotation 9999"),
    (_area_nan, "non_finite_value", "annotation 100"),
    (_keypoint_text, "non_numeric_value", "image 2 (0001.jpg) annotation 100"),
    (_keypoint_nan, "non_finite_keypoint", "annotation 100"),
])
def test_bad_record_is_skipped_and_reported(tmp_path, damage, reason, item):
    src = make_coco(tmp_path / "raw")
    damage(src)
    status, m = build_split("toy", coco(src), "val", tmp_path / "out")
    expect = 5 if reason == "unknown_image_id" else 4
    assert status == "built" and m["samples"] == expect
    assert m["skipped"]["count"] == 1 and m["skipped"]["by_reason"] == {reason: 1}
    (ex,) = m["skipped"]["examples"]
    assert ex["reason"] == reason and item in ex["item"]
    split = tmp_path / "out" / "toy" / "val"
    gt = strict_json((split / "gt.json").read_text())  # every number finite: strict JSON
    assert len(gt["images"]) == expect
    strict_json((split / "manifest.json").read_text())
    for sample in wds.WebDataset(sorted(str(p) for p in split.glob("*.tar")), shardshuffle=False):
        strict_json(sample["json"].decode())


def test_points_slightly_outside_become_background(tmp_path):
    src = make_coco(tmp_path / "raw", n=1)
    edit_ann(src, lambda d: d["annotations"][0]["keypoints"].__setitem__(slice(0, 3), [70, 10, 2]))  # w = 64
    _, m = build_split("toy", coco(src), "val", tmp_path / "out")
    assert m["skipped"]["count"] == 0 and m["labelled_keypoints"]["body"] == 9
    (s,) = wds.WebDataset(str(tmp_path / "out" / "toy" / "val" / "toy-val-000000.tar"), shardshuffle=False)
    assert read_meta(s)["people"][0]["keypoints"][0].tolist() == [0, 0, 2]


# -- structural errors: a clear error and nothing written ----------------------------------------------
@pytest.mark.parametrize("text, field", [
    ("{not json", "not valid JSON"),
    (json.dumps({"images": []}), "required field 'annotations' missing in the top level"),
    (json.dumps({"images": [{"id": 1, "file_name": "a.jpg", "width": 4}], "annotations": []}),
     "required field 'height' missing in images[0]"),
    (json.dumps({"images": [], "annotations": [{"id": 5, "image_id": 1, "bbox": [0, 0, 1, 1]}]}),
     "required field 'keypoints' missing in annotations[0] (id 5)"),
])
def test_structural_error_names_file_and_field(tmp_path, text, field):
    src = make_coco(tmp_path / "raw")
    (src / "ann.json").write_text(text)
    with pytest.raises(InputError) as e:
        build_split("toy", coco(src), "val", tmp_path / "out")
    assert str(src / "ann.json") in str(e.value) and field in str(e.value)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*"))


# -- the command line -----------------------------------------------------------------------------------
def run_cli(*overrides, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "sharding", *overrides], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def test_cli_builds_reports_skips_and_lists_absent(tmp_path):
    src = make_coco(tmp_path / "raw")
    _corrupt(src)
    out = tmp_path / "out"
    args = [f"out_dir={out}", "only=[coco,mpii]", "sources.coco.train=null",
            f"sources.coco.val.ann={src / 'ann.json'}", f"sources.coco.val.images={src}",
            f"raw={tmp_path}/none"]
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr
    assert "coco" in r.stdout and "built" in r.stdout
    assert "unreadable_image" in r.stdout and "0000.jpg" in r.stdout  # the summary quotes the first examples
    assert "absent, skipped: mpii" in r.stdout
    m = json.loads((out / "coco" / "val" / "manifest.json").read_text())
    assert m["samples"] == 4 and m["skipped"]["by_reason"] == {"unreadable_image": 1}
    assert not (out / "mpii").exists() and not (out / "synth_body").exists()
    r = run_cli(*args)
    assert r.returncode == 0 and "unchanged" in r.stdout
    (src / "ann.json").write_text("{broken")
    r = run_cli(*args)
    assert r.returncode == 1 and "not valid JSON" in r.stdout and str(src / "ann.json") in r.stdout
    assert json.loads((out / "coco" / "val" / "manifest.json").read_text()) == m  # the last good build stays
    r = run_cli(f"out_dir={out}", "only=[nope]")
    assert r.returncode == 2 and "unknown source" in r.stdout


def test_split_counts_follow_the_mix_and_sum_exactly():
    mix = {"synth_body": 0.3, "synth_wholebody": 0.3, "synth_face": 0.15, "synth_hand": 0.15,
           "synth_background": 0.1}
    for total in (0, 1, 7, 100, 2001):
        c = split_counts(total, mix)
        assert sum(c.values()) == total
        assert all(abs(c[k] - total * v) < 1 for k, v in mix.items())
    with pytest.raises(ValueError, match="synthetic.mix"):
        split_counts(10, {"synth_body": -1, "synth_face": 0.5})


def test_cli_synthetic_default(tmp_path):
    pytest.importorskip("sharding.synthetic", reason="the renderer (sharding/synthetic.py) is not in yet")
    out = tmp_path / "shards"
    r = run_cli(f"out_dir={out}", "synthetic.train_images=20", "synthetic.val_images=10",
                "synthetic.size=128")
    assert r.returncode == 0, r.stdout + r.stderr
    kinds = ["synth_body", "synth_wholebody", "synth_face", "synth_hand", "synth_background"]
    totals = {"train": 0, "val": 0}
    for kind in kinds:
        for split in ("train", "val"):
            split_dir = out / kind / split
            if not split_dir.exists():
                continue
            m = json.loads((split_dir / "manifest.json").read_text())
            got = list(wds.WebDataset(str(split_dir / m["url"]), shardshuffle=False))
            assert len(got) == m["samples"] > 0
            totals[split] += m["samples"]
            for s in got:
                meta = read_meta(s)
                assert meta["source"] == kind and (meta["width"], meta["height"]) == (128, 128)
                assert ("jpg" in s or "png" in s) and all(len(p["keypoints"]) == 135 for p in meta["people"])
            if split == "val":
                assert (split_dir / "gt.json").is_file()
    assert totals == {"train": 20, "val": 10}
    assert sorted(p.name for p in out.iterdir()) == sorted(kinds)


def test_parallel_workers_write_identical_shards(tmp_path):
    """Converting in forked workers gives byte-identical tars (same order, fixed tar mtimes)."""
    src = make_coco(tmp_path / "raw", n=6)
    _, one = build_split("toy", coco(src), "train", tmp_path / "a", Settings(max_count=4))
    _, two = build_split("toy", coco(src), "train", tmp_path / "b", Settings(max_count=4, workers=2))
    assert [s["sha256"] for s in one["shards"]] == [s["sha256"] for s in two["shards"]]
    assert len(one["shards"]) == 2


def test_keypoints_member_round_trips_and_bad_ones_are_named():
    kps = np.random.default_rng(0).uniform(0, 500, (2, 135, 3)).astype(np.float32)
    meta = {"image_id": 1, "people": [{"id": i, "keypoints": kps[i].tolist(), "bbox": [0, 0, 1, 1]}
                                      for i in range(2)]}
    members = Record("k", b"jpg", "jpg", meta).members()
    assert set(members) == {"__key__", "jpg", "json", KEYPOINTS}
    back = read_meta(members)
    assert np.array_equal(np.stack([p["keypoints"] for p in back["people"]]), kps)
    assert back["people"][0]["bbox"] == [0, 0, 1, 1]
    assert KEYPOINTS not in Record("k", b"jpg", "jpg", dict(meta, people=[])).members()  # nobody: no array
    one_person = dict(members, json=json.dumps(dict(meta, people=meta["people"][:1])).encode())
    with pytest.raises(ValueError, match=r"shape \(2, 135, 3\) for 1 people"):
        read_meta(one_person)
    short = dict(meta, people=[dict(meta["people"][0], keypoints=kps[0, :134].tolist())])  # keypoints in json
    with pytest.raises(ValueError, match="keypoints of person 0 are not 135 x 3"):
        read_meta({"json": json.dumps(short).encode()})
