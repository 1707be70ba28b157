"""Every converter on real samples (../shared/fixtures) or on small files written here: the manifest counts
equal the annotation files' own counts, the keypoints land where the annotation says, and the shards read
back through webdataset."""

import io
import json
from pathlib import Path

import numpy as np
import pytest
import webdataset as wds
from PIL import Image

from sharding.coco import CocoBackgrounds, CocoBody, CocoFoot, CocoWholeBody
from sharding.faces import CocoFaces, PtsFaces
from sharding.hands import CocoHands, HandDbRaw
from sharding.mpii import Mpii
from sharding.people import FACE_TO_PERSON, HAND_TO_PERSON, InputError
from sharding.writer import build_split
from src.core.record import read_meta
from src.core.skeleton import BODY_135


def build(conv, tmp_path, name="src", split="val"):
    status, manifest = build_split(name, conv, split, tmp_path)
    assert status == "built"
    return manifest


def samples(tmp_path, name="src", split="val") -> list[dict]:
    """The split's samples read back through webdataset: meta parsed, images decoded to arrays."""
    urls = sorted(str(p) for p in (tmp_path / name / split).glob("*.tar"))
    out = []
    for s in wds.WebDataset(urls, shardshuffle=False):
        s = dict(s, json=read_meta(s))
        for k in ("jpg", "png", "ignore.png"):
            if k in s:
                s[k] = np.asarray(Image.open(io.BytesIO(s[k])))
        out.append(s)
    return out


def test_coco17_fixture_counts_mask_and_bytes(fixtures, tmp_path):
    d = fixtures / "coco"
    m = build(CocoBody(val={"ann": d / "test_coco.json", "images": d}), tmp_path)
    raw = json.loads((d / "test_coco.json").read_text())
    with_kp = [a for a in raw["annotations"] if a["num_keypoints"] > 0]
    assert (m["samples"], m["people"], len(raw["annotations"])) == (4, 12, 14)  # coco_wholebody.md §B.1
    assert m["people"] == len(with_kp)
    assert m["labelled_keypoints"]["body"] == sum(a["num_keypoints"] for a in with_kp) == 181
    assert m["groups"] == ["body"] and m["skipped"]["count"] == 0
    by_id = {a["id"]: a for a in raw["annotations"]}
    got = samples(tmp_path)
    assert len(got) == 4
    masked_images = {a["image_id"] for a in raw["annotations"] if a["num_keypoints"] == 0 or a["iscrowd"]}
    for s in got:
        meta = s["json"]
        assert s["jpg"].shape[:2] == (meta["height"], meta["width"])
        assert ("ignore.png" in s) == (meta["image_id"] in masked_images)
        for p in meta["people"]:
            ann = by_id[p["id"]]
            kp = np.asarray(p["keypoints"])
            src = np.asarray(ann["keypoints"], float).reshape(17, 3)
            lab = src[:, 2] > 0
            assert np.allclose(kp[:17][lab, :2], src[lab, :2])
            assert (kp[:17, 2][lab] == np.where(src[lab, 2] == 2, 1, 0)).all()
            assert (kp[17:, 2] == 4).all() and (kp[:17][~lab, 2] == 2).all()
            assert p["scale"] == pytest.approx(ann["bbox"][3], abs=0.01)
            assert p["area"] == pytest.approx(ann["area"], abs=0.01)
        if "ignore.png" in s:
            ign = s["ignore.png"]
            assert ign.shape[:2] == (meta["height"], meta["width"]) and ign.max() > 0


def test_coco_jpeg_bytes_are_not_reencoded(fixtures, tmp_path):
    d = fixtures / "coco"
    build(CocoBody(val={"ann": d / "test_coco.json", "images": d}), tmp_path)
    urls = sorted(str(p) for p in (tmp_path / "src" / "val").glob("*.tar"))
    for s in wds.WebDataset(urls, shardshuffle=False):
        assert s["jpg"] == (d / json.loads(s["json"])["file_name"]).read_bytes()


def test_wholebody_fixture_counts(fixtures, tmp_path):
    d = fixtures / "coco"
    m = build(CocoWholeBody(val={"ann": d / "test_coco_wholebody.json", "images": d}), tmp_path)
    assert (m["samples"], m["people"]) == (4, 12)
    # coco_wholebody.md §B.1 totals: 181 body, 38 foot, 272 face, 105 + 105 hand points (incl. wrists);
    # the face group adds 2 derived pupils per valid face, a hand group holds 20 points (its wrist is body).
    assert m["labelled_keypoints"] == {"body": 181, "mpii": 0, "foot": 38, "lhand": 100, "rhand": 100,
                                       "face": 272 + 2 * 4}
    assert m["groups"] == ["body", "face", "foot", "lhand", "rhand"]
    gt = json.loads((tmp_path / "src" / "val" / "gt.json").read_text())
    raw = json.loads((d / "test_coco_wholebody.json").read_text())
    assert len(gt["images"]) == 4 and len(gt["annotations"]) == 14  # 12 people + 2 without keypoints
    assert sum(a["num_keypoints"] == 0 for a in gt["annotations"]) == 2
    key = {(a["image_id"], tuple(a["bbox"])): a for a in raw["annotations"]}
    for a in gt["annotations"]:
        b = key[(a["image_id"], tuple(a["bbox"]))]
        for part in ("keypoints", "foot_kpts", "face_kpts", "lefthand_kpts", "righthand_kpts"):
            x, y = np.reshape(a[part], (-1, 3)), np.reshape(b[part], (-1, 3))
            assert ((x[:, 2] > 0) == (y[:, 2] > 0)).all(), (b["id"], part)
            assert np.allclose(x[y[:, 2] > 0, :2], y[y[:, 2] > 0, :2], atol=0.01), (b["id"], part)


@pytest.mark.parametrize("conv, case", [
    (CocoWholeBody, "mmpose_test_coco_wholebody__example_pred_4imgs"),
    (CocoBody, "mmpose_test_coco__xtcocoapi_example_coco_preds"),
])
def test_val_gt_json_reproduces_the_reference_metrics(fixtures, tmp_path, conv, case):
    """gt.json written from the shards scores the reference predictions exactly as the original GT does
    with xtcocotools (crowd/keypoint-free people and the hands' own wrists included)."""
    from src.evaluation.evaluator import evaluate_wholebody

    reference = fixtures / "coco_wholebody_eval" / "expected_metrics_xtcocotools.json"
    expected = json.loads(reference.read_text())[case]
    build(conv(val={"ann": fixtures / expected["gt"], "images": fixtures / "coco"}), tmp_path)
    gt = json.loads((tmp_path / "src" / "val" / "gt.json").read_text())
    preds = json.loads((fixtures / expected["pred"]).read_text())
    metrics = evaluate_wholebody(gt, preds)
    for part, stats in expected["metrics"].items():
        for stat, value in stats.items():
            assert metrics[part][stat] == pytest.approx(value, abs=1e-4), (part, stat)


def test_coco_foot_written_file(fixtures, tmp_path):
    """OpenPose's foot json is COCO with 23 keypoints; no fixture exists: write one from the real people."""
    d = fixtures / "coco"
    raw = json.loads((d / "test_coco_wholebody.json").read_text())
    for a in raw["annotations"]:
        a["keypoints"] = a["keypoints"] + a["foot_kpts"]
        for k in [k for k in a if k.endswith(("_kpts", "_box", "_valid"))]:
            del a[k]
    (tmp_path / "foot.json").write_text(json.dumps(raw))
    m = build(CocoFoot(val={"ann": tmp_path / "foot.json", "images": d}), tmp_path)
    assert (m["samples"], m["people"]) == (4, 12)
    assert m["labelled_keypoints"]["body"] == 181 and m["labelled_keypoints"]["foot"] == 38
    assert m["groups"] == ["body", "foot"]
    for s in samples(tmp_path):
        for p in s["json"]["people"]:
            kp = np.asarray(p["keypoints"])
            assert (kp[25:, 2] == 4).all() and (kp[17:19, 2] == 4).all()


def test_backgrounds_written_file(fixtures, tmp_path):
    d = fixtures / "coco"
    raw = json.loads((d / "test_coco.json").read_text())
    person_free = {785, 40083}
    raw["annotations"] = [a for a in raw["annotations"] if a["image_id"] not in person_free]
    (tmp_path / "inst.json").write_text(json.dumps(raw))
    m = build(CocoBackgrounds(train={"ann": tmp_path / "inst.json", "images": d}), tmp_path, split="train")
    assert (m["samples"], m["people"]) == (2, 0)
    assert m["notes"] == {"images_with_people": 2}
    got = samples(tmp_path, split="train")
    assert {s["json"]["image_id"] for s in got} == person_free
    assert all(s["json"]["groups"] == list(BODY_135.groups) and "ignore.png" not in s for s in got)


def test_mpii_fixture(fixtures, tmp_path):
    d = fixtures / "mpii"
    raw = json.loads((d / "test_mpii.json").read_text())
    m = build(Mpii(val={"ann": d / "test_mpii.json", "images": d}), tmp_path)
    assert (m["samples"], m["people"]) == (5, len(raw)) == (5, 5)
    vis = np.array([e["joints_vis"] for e in raw])
    assert m["labelled_keypoints"]["mpii"] == int(vis[:, [8, 9]].sum())
    assert m["labelled_keypoints"]["body"] == int(vis[:, [12, 13]].sum())
    by_name = {e["image"]: e for e in raw}
    for s in samples(tmp_path):
        (p,) = s["json"]["people"]
        e = by_name[s["json"]["file_name"]]
        kp = np.asarray(p["keypoints"])
        assert np.allclose(kp[[5, 6, 17, 18], :2], np.asarray(e["joints"])[[13, 12, 8, 9]], atol=0.01)
        assert p["scale"] == pytest.approx(e["scale"] * 200, abs=0.01)
        assert p["center"] == pytest.approx(e["center"])
        assert BODY_135.labelled(["mpii"])[np.flatnonzero(kp[:, 2] != 4)].all()


@pytest.mark.parametrize("folder, ann, side, groups", [
    ("onehand10k", "test_onehand10k.json", "right", ["rhand"]),
    ("freihand", "test_freihand.json", "right", ["rhand"]),
    ("panoptic", "test_panoptic.json", "filename", ["lhand", "rhand"]),
])
def test_coco_style_hands(fixtures, tmp_path, folder, ann, side, groups):
    d = fixtures / folder
    raw = json.loads((d / ann).read_text())
    m = build(CocoHands(val={"ann": d / ann, "images": d}, side=side), tmp_path)
    assert m["samples"] == len(raw["images"]) and m["people"] == len(raw["annotations"])
    n_lab = sum(sum(v > 0 for v in a["keypoints"][2::3]) for a in raw["annotations"])
    lab = m["labelled_keypoints"]
    assert lab["lhand"] + lab["rhand"] + lab["body"] == n_lab  # 20 hand points + the wrist (a body point)
    assert m["groups"] == groups
    names = {i["id"]: i["file_name"] for i in raw["images"]}
    for s in samples(tmp_path):
        meta = s["json"]
        (p,) = meta["people"]
        is_left = side == "filename" and Path(names[meta["image_id"]]).stem.endswith("_l")
        own = BODY_135.groups["lhand" if is_left else "rhand"]
        kp = np.asarray(p["keypoints"])
        assert meta["groups"] == ["lhand" if is_left else "rhand"]
        assert (kp[own.start:own.stop, 2] <= 1).any()
        lab_pts = kp[kp[:, 2] <= 1, :2]
        longest = (lab_pts.max(0) - lab_pts.min(0)).max()
        assert p["scale"] == pytest.approx(HAND_TO_PERSON * longest, rel=1e-3)


def test_handdb_raw_written_files(fixtures, tmp_path):
    """CMU HandDB raw json (no fixture): written from the panoptic fixture's real hands."""
    d = fixtures / "panoptic"
    raw = json.loads((d / "test_panoptic.json").read_text())
    folder = tmp_path / "manual_test"
    folder.mkdir()
    names = {i["id"]: i["file_name"] for i in raw["images"]}
    for a in raw["annotations"]:
        name = names[a["image_id"]]
        pts = np.asarray(a["keypoints"], float).reshape(21, 3)
        (folder / name).write_bytes((d / name).read_bytes())
        is_left = int(Path(name).stem.endswith("_l"))
        (folder / name).with_suffix(".json").write_text(json.dumps(
            {"hand_pts": pts.tolist(), "is_left": is_left, "head_size": a["head_size"]}))
    m = build(HandDbRaw(val={"dir": folder}), tmp_path / "out")
    assert (m["samples"], m["people"]) == (4, 4)
    assert m["labelled_keypoints"]["lhand"] == 40 and m["labelled_keypoints"]["rhand"] == 40
    for s in samples(tmp_path / "out"):
        (p,) = s["json"]["people"]
        is_left = s["json"]["file_name"].endswith("_l.jpg")
        assert s["json"]["groups"] == ["lhand" if is_left else "rhand"]
        assert np.asarray(p["keypoints"])[9 if is_left else 10, 2] == 1


@pytest.mark.parametrize("folder, ann", [("300w", "test_300w.json"), ("300vw", "anno_300vw.json")])
def test_coco_style_faces(fixtures, tmp_path, folder, ann):
    d = fixtures / folder
    raw = json.loads((d / ann).read_text())
    m = build(CocoFaces(val={"ann": d / ann, "images": d}), tmp_path)
    assert m["samples"] == len(raw["images"]) and m["people"] == len(raw["annotations"])
    assert m["labelled_keypoints"]["face"] == 70 * len(raw["annotations"])  # 68 + derived pupils
    assert m["labelled_keypoints"]["body"] == 3 * len(raw["annotations"])  # derived nose and eyes
    by_id = {a["image_id"]: a for a in raw["annotations"]}
    for s in samples(tmp_path):
        (p,) = s["json"]["people"]
        src = np.asarray(by_id[s["json"]["image_id"]]["keypoints"], float).reshape(68, 3)
        kp = np.asarray(p["keypoints"])
        assert np.allclose(kp[65:133, :2], src[:, :2], atol=0.01)
        assert kp[0, :2] == pytest.approx(src[[27, 28, 29, 30, 31, 32, 34, 35], :2].mean(0), abs=0.02)
        assert p["scale"] == pytest.approx(FACE_TO_PERSON * np.ptp(kp[kp[:, 2] <= 1, 1]), rel=1e-3)


def test_pts_faces_300vw(fixtures, tmp_path):
    d = fixtures / "300vw"
    m = build(PtsFaces(val={"dir": d}), tmp_path)
    assert (m["samples"], m["people"]) == (4, 4)  # 4 .pts files, 68 points each
    assert m["labelled_keypoints"]["face"] == 4 * 70
    raw = json.loads((d / "anno_300vw.json").read_text())
    names = {i["id"]: i["file_name"] for i in raw["images"]}
    ann_by_file = {names[a["image_id"]]: a for a in raw["annotations"]}
    seen = 0
    for s in samples(tmp_path):
        meta = s["json"]
        if meta["file_name"] in ann_by_file:  # the json and the .pts files agree point for point
            kp = np.asarray(meta["people"][0]["keypoints"])
            src = np.asarray(ann_by_file[meta["file_name"]]["keypoints"], float).reshape(68, 3)
            assert np.allclose(kp[65:133, :2], src[:, :2], atol=0.01)
            seen += 1
    assert seen == 3


def test_png_source_keeps_png(fixtures, tmp_path):
    d = fixtures / "300w"
    build(CocoFaces(val={"ann": d / "test_300w.json", "images": d}), tmp_path)
    urls = sorted(str(p) for p in (tmp_path / "src" / "val").glob("*.tar"))
    for s in wds.WebDataset(urls, shardshuffle=False):
        name = json.loads(s["json"])["file_name"]
        assert s["png"] == (d / name).read_bytes()
        assert Image.open(d / name).size == tuple(json.loads(s["json"])[k] for k in ("width", "height"))


def test_structural_errors_in_other_formats_name_file_and_field(tmp_path):
    (tmp_path / "pts").mkdir()
    (tmp_path / "pts" / "a.pts").write_text("version: 1\n{\n1 2\n}\n")
    with pytest.raises(InputError, match=r"a\.pts: required field 'n_points' missing"):
        build_split("f", PtsFaces(val={"dir": tmp_path / "pts"}), "val", tmp_path / "out")
    (tmp_path / "hands").mkdir()
    (tmp_path / "hands" / "h.json").write_text(json.dumps({"is_left": 1}))
    with pytest.raises(InputError, match=r"h\.json: required field 'hand_pts' missing"):
        build_split("h", HandDbRaw(val={"dir": tmp_path / "hands"}), "val", tmp_path / "out")
    mpii = Mpii(val={"ann": tmp_path / "mpii.json", "images": tmp_path})
    (tmp_path / "mpii.json").write_text(json.dumps({"image": "x.jpg"}))
    with pytest.raises(InputError, match=r"mpii\.json: top level must be a JSON list"):
        build_split("m", mpii, "val", tmp_path / "out")
    (tmp_path / "mpii.json").write_text(json.dumps([{"image": "x.jpg", "joints": [], "center": [0, 0]}]))
    with pytest.raises(InputError, match=r"mpii\.json: required field 'scale' missing in entry 0"):
        build_split("m", mpii, "val", tmp_path / "out")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.tar"))


def test_wrong_length_face_pts_is_skipped(fixtures, tmp_path):
    d = tmp_path / "faces"
    d.mkdir()
    for stem in ("000006", "000009"):
        (d / f"{stem}.jpg").write_bytes((fixtures / "300vw" / "001" / "imgs" / f"{stem}.jpg").read_bytes())
        (d / f"{stem}.pts").write_text((fixtures / "300vw" / "001" / "annot" / f"{stem}.pts").read_text())
    lines = (d / "000009.pts").read_text().splitlines()
    (d / "000009.pts").write_text("\n".join(lines[:10] + lines[-1:]))  # n_points 68, 7 listed
    m = build(PtsFaces(val={"dir": d}), tmp_path / "out")
    assert m["samples"] == 1 and m["skipped"]["by_reason"] == {"wrong_keypoint_count": 1}
    assert "000009.pts" in m["skipped"]["examples"][0]["item"]
