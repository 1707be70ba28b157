"""evaluate_keypoints / evaluate: the plain COCO keypoint protocol for any layout with OKS sigmas, against
pycocotools' own COCOeval (CrowdPose and AP-10K fixtures, a synthetic layout), per-part rules, refusals."""

import contextlib
import copy
import io
import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from src.core.skeleton import BODY_135, BODY_FOOT, Layout
from src.evaluation.evaluator import (
    ENGINES,
    ONE_CATEGORY,
    STATS,
    EvalInputError,
    evaluate,
    evaluate_keypoints,
    evaluate_wholebody,
)

CUSTOM = "custom"


def _json(path: Path):
    with open(path) as f:
        return json.load(f)


def _fixture_layout(fixtures: Path, name: str) -> Layout:
    meta = _json(fixtures / CUSTOM / name / "meta.json")
    return Layout.from_dict({"name": name, "keypoints": meta["keypoints"], "pairs": meta["skeleton_by_name"],
                             "sigmas": [7.0] * len(meta["keypoints"]), "oks_sigmas": meta["sigmas"]})


def _reference(gt: dict, preds: list[dict], sigmas) -> dict[str, float]:
    """Plain pycocotools: COCO(gt), loadRes(preds), COCOeval 'keypoints' with the layout's sigmas."""
    coco_gt = COCO()
    coco_gt.dataset = copy.deepcopy(gt)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(copy.deepcopy(preds))
        ev = COCOeval(coco_gt, coco_dt, "keypoints")
        ev.params.kpt_oks_sigmas = np.array(sigmas)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {s: float(v) for s, v in zip(STATS, ev.stats, strict=True)}


def _max_diff(a: dict[str, float], b: dict[str, float]) -> float:
    assert list(a) == list(b) == list(STATS)
    return max(abs(a[s] - b[s]) for s in STATS)


def _perturbed(gt: dict, seed: int) -> list[dict]:
    """Each GT person as a detection: x, y with noise, a fifth of the points dropped (0, 0, 0), a confidence
    in (0.2, 1) on the rest of the labelled points, varied scores; plus a displaced false positive on top."""
    rng = np.random.default_rng(seed)
    preds = []
    for ann in gt["annotations"]:
        kp = np.asarray(ann["keypoints"], np.float64).reshape(-1, 3)
        out = kp.copy()
        out[:, :2] += rng.normal(0.0, 6.0, (len(kp), 2))
        out[:, 2] = np.where(kp[:, 2] > 0, rng.uniform(0.2, 1.0, len(kp)), 0.0)
        out[rng.random(len(kp)) < 0.2] = 0.0
        preds.append({"image_id": ann["image_id"], "category_id": ann["category_id"],
                      "keypoints": out.reshape(-1).tolist(), "score": float(rng.uniform(0.3, 0.9))})
    fp = copy.deepcopy(preds[0])
    fp["keypoints"] = [x + 100.0 if i % 3 < 2 else x for i, x in enumerate(fp["keypoints"])]
    fp["score"] = 0.95
    return [*preds, fp]


def _crowdpose_gt(fixtures: Path) -> dict:
    """The CrowdPose sample with an ``area`` on each person: the file has none (CrowdPose's own tools scale
    OKS by 0.53 x the box area), and COCO's protocol needs one."""
    gt = _json(fixtures / CUSTOM / "crowdpose" / "test_crowdpose.json")
    for ann in gt["annotations"]:
        ann["area"] = 0.53 * ann["bbox"][2] * ann["bbox"][3]
    return gt


# -- fixtures: equal to pycocotools' COCOeval -------------------------------------------------------------
@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("seed", [0, 1])
def test_crowdpose_equals_pycocotools(fixtures, engine, seed):
    layout = _fixture_layout(fixtures, "crowdpose")
    gt = _crowdpose_gt(fixtures)
    preds = _perturbed(gt, seed)
    gt0, preds0 = copy.deepcopy(gt), copy.deepcopy(preds)
    got = evaluate_keypoints(gt, preds, layout, engine)
    assert list(got) == ["keypoints"]
    expected = _reference(gt, preds, layout.oks_sigmas)
    assert _max_diff(got["keypoints"], expected) <= 1e-6
    assert 0.0 < got["keypoints"]["AP"] < 1.0  # not a trivial case
    assert gt == gt0 and preds == preds0  # inputs are not modified


def test_crowdpose_gt_as_predictions_scores_one(fixtures):
    layout = _fixture_layout(fixtures, "crowdpose")
    gt = _crowdpose_gt(fixtures)
    preds = [{"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"], "score": 1.0 - i / 10}
             for i, a in enumerate(gt["annotations"])]
    labelled = [p for p, a in zip(preds, gt["annotations"], strict=True) if a["num_keypoints"] > 0]
    got = evaluate_keypoints(gt, labelled, layout)["keypoints"]
    assert got["AP"] == got["AR"] == got["AP (L)"] == 1.0
    assert got["AP (M)"] == -1.0  # no medium-sized labelled person in the sample
    # the unlabelled person (every point 0) as a detection: still a false positive for COCO (ranked 2nd)
    got = evaluate_keypoints(gt, preds, layout)["keypoints"]
    assert got["AP"] < 1.0 and got["AR"] == 1.0


def test_crowdpose_file_without_area_is_scored_with_its_boxes(fixtures):
    """CrowdPose's file has no ``area``: scored with each box's w x h, with a warning, as a copy with that
    area written in is."""
    layout = _fixture_layout(fixtures, "crowdpose")
    path = fixtures / CUSTOM / "crowdpose" / "test_crowdpose.json"
    gt = _json(path)
    preds = [{"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"], "score": 1.0}
             for a in gt["annotations"] if not a.get("iscrowd", 0)]
    with pytest.warns(UserWarning, match="without 'area'"):
        got = evaluate_keypoints(path, preds, layout)
    for a in gt["annotations"]:
        a["area"] = a["bbox"][2] * a["bbox"][3]
    assert got == evaluate_keypoints(gt, preds, layout)


def test_crowdpose_detection_file_is_boxes_not_keypoint_results(fixtures):
    """``test_crowdpose_det_AP_40.json`` holds person boxes (a top-down detector's), not keypoint results."""
    layout = _fixture_layout(fixtures, "crowdpose")
    dets = _json(fixtures / CUSTOM / "crowdpose" / "test_crowdpose_det_AP_40.json")
    assert len(dets) == 6 and all("bbox" in d and "keypoints" not in d for d in dets)
    with pytest.raises(EvalInputError, match=r"prediction record 0: required field 'keypoints' is missing"):
        evaluate_keypoints(_crowdpose_gt(fixtures), dets, layout)


@pytest.mark.parametrize("engine", ENGINES)
def test_ap10k_is_category_agnostic_and_equals_pycocotools_on_one_category(fixtures, engine):
    layout = _fixture_layout(fixtures, "ap10k")
    path = fixtures / CUSTOM / "ap10k" / "test_ap10k.json"
    gt = _json(path)
    assert len(gt["categories"]) == 54 and {a["category_id"] for a in gt["annotations"]} == {1, 26}
    preds = _perturbed(gt, 3)
    for p in preds:  # the model does not name the species: every detection says category 7
        p["category_id"] = 7
    got = evaluate_keypoints(path, preds, layout, engine)["keypoints"]
    one_gt = copy.deepcopy(gt)
    for ann in one_gt["annotations"]:
        ann["category_id"] = ONE_CATEGORY
    one_preds = [{**p, "category_id": ONE_CATEGORY} for p in preds]
    assert _max_diff(got, _reference(one_gt, one_preds, layout.oks_sigmas)) <= 1e-6
    assert got["AP"] > 0.2
    # per category, nothing matches (no GT is a category-7 animal): the pooled score is what is reported
    assert _reference(gt, preds, layout.oks_sigmas)["AP"] == 0.0


def test_ap10k_gt_as_predictions_scores_one_whatever_their_category(fixtures):
    layout = _fixture_layout(fixtures, "ap10k")
    gt = _json(fixtures / CUSTOM / "ap10k" / "test_ap10k.json")
    preds = [{"image_id": a["image_id"], "category_id": 3, "keypoints": a["keypoints"], "score": 0.9}
             for a in gt["annotations"]]
    got = evaluate_keypoints(gt, preds, layout)["keypoints"]
    assert got == {s: (-1.0 if "(M)" in s else 1.0) for s in STATS}


def test_evaluate_picks_wholebody_for_the_body135_family(fixtures):
    gt = _json(fixtures / "coco" / "test_coco_wholebody.json")
    preds = [{"image_id": a["image_id"], "category_id": a["category_id"], "score": 1.0,
              **{f: a[f] for f in ("keypoints", "foot_kpts", "face_kpts", "lefthand_kpts", "righthand_kpts")
                 if f in a}} for a in gt["annotations"]]
    expected = evaluate_wholebody(gt, preds)
    assert evaluate(gt, preds, BODY_135) == expected
    assert evaluate(gt, preds, "body_foot") == expected


# -- a synthetic layout: 5 points, 2 parts ----------------------------------------------------------------
FIVE = Layout.from_dict({
    "name": "FIVE", "keypoints": ["a", "b", "c", "d", "e"], "pairs": [["a", "b"], ["b", "c"], ["c", "d"],
                                                                     ["d", "e"]],
    "sigmas": [7.0] * 5, "oks_sigmas": [0.03, 0.05, 0.07, 0.09, 0.1],
    "parts": {"front": ["a", "b", "c"], "back": ["d", "e"]},
})
FIVE_WHOLE = Layout.from_dict({**FIVE.to_dict(), "name": "FIVE_WHOLE", "parts": None})


def _synthetic_gt() -> dict:
    """3 images, 5 people (medium and large), one crowd region, one person without a labelled back."""
    rng = np.random.default_rng(0)
    anns = []
    for i, (img, size) in enumerate([(1, 80), (1, 160), (2, 60), (2, 200), (3, 120), (3, 90)]):
        x0, y0 = 10 + 220 * (i % 2), 10 + 5 * i
        kp = np.zeros((5, 3))
        kp[:, 0] = x0 + rng.uniform(0, size, 5)
        kp[:, 1] = y0 + rng.uniform(0, size, 5)
        kp[:, 2] = 2
        if i == 4:
            kp[3:] = 0  # no labelled back point
        anns.append({"id": 100 + i, "image_id": img, "category_id": 1, "iscrowd": int(i == 5),
                     "bbox": [x0, y0, size, size], "area": float(size * size) * 0.6,
                     "num_keypoints": int((kp[:, 2] > 0).sum()),
                     "keypoints": kp.reshape(-1).round(2).tolist()})
    return {"images": [{"id": i, "width": 640, "height": 480, "file_name": f"{i}.jpg"} for i in (1, 2, 3)],
            "annotations": anns, "categories": [{"id": 1, "name": "thing"}]}


def _as_preds(gt: dict) -> list[dict]:
    return [{"image_id": a["image_id"], "category_id": 1, "score": 0.9 - 0.1 * i,
             "keypoints": [x if j % 3 < 2 else (0.8 if x > 0 else 0.0) for j, x in enumerate(a["keypoints"])]}
            for i, a in enumerate(gt["annotations"]) if not a["iscrowd"]]


def _write(tmp_path: Path, gt: dict) -> Path:
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(gt))
    return path


@pytest.mark.parametrize("engine", ENGINES)
def test_synthetic_parts_are_one_for_predictions_equal_to_gt(tmp_path, engine):
    path = _write(tmp_path, _synthetic_gt())
    got = evaluate_keypoints(path, _as_preds(_synthetic_gt()), FIVE, engine)
    assert list(got) == ["front", "back"]
    for part in got:
        assert got[part] == {s: 1.0 for s in STATS}, part


@pytest.mark.parametrize("engine", ENGINES)
def test_synthetic_perturbed_part_drops_and_the_other_stays_one(tmp_path, engine):
    gt = _synthetic_gt()
    preds = _as_preds(gt)
    for p in preds:  # the back points (d, e) moved by 15 px
        p["keypoints"] = [x + 15.0 if j >= 9 and j % 3 < 2 else x for j, x in enumerate(p["keypoints"])]
    got = evaluate_keypoints(_write(tmp_path, gt), preds, FIVE, engine)
    assert got["front"] == {s: 1.0 for s in STATS}
    assert got["back"]["AP"] < 0.9 and got["back"]["AR"] < 0.9


@pytest.mark.parametrize("engine", ENGINES)
def test_synthetic_whole_part_equals_pycocotools(engine):
    gt = _synthetic_gt()
    preds = _perturbed(gt, 5)
    preds[2]["keypoints"] = [0.0] * 15  # no point found: still a detection for COCO
    got = evaluate_keypoints(gt, preds, FIVE_WHOLE, engine)
    assert list(got) == ["keypoints"]
    assert _max_diff(got["keypoints"], _reference(gt, preds, FIVE_WHOLE.oks_sigmas)) <= 1e-6
    assert 0.0 < got["keypoints"]["AP"] < 1.0


def test_subset_part_ignores_unlabelled_gt_drops_empty_detections_and_ranks_by_part_score():
    gt = _synthetic_gt()
    preds = _as_preds(gt)
    # the person without a labelled back (annotation 4) is found without any back point: no miss for back
    assert preds[4]["keypoints"][9:] == [0.0] * 6
    # a top-ranked detection with only back points, displaced: a false positive for back, absent for front
    back = [x + 40.0 if j % 3 < 2 else x for j, x in enumerate(preds[0]["keypoints"][9:])]
    extra = {"image_id": 1, "category_id": 1, "score": 2.0, "keypoints": [0.0] * 9 + back}
    got = evaluate_keypoints(gt, [*preds, extra], FIVE)
    assert got["front"] == {s: 1.0 for s in STATS}
    assert got["back"]["AP"] < 1.0 and got["back"]["AR"] == 1.0
    extra["back_score"] = 0.01  # ranked below every true back now
    assert evaluate_keypoints(gt, [*preds, extra], FIVE)["back"] == {s: 1.0 for s in STATS}


def test_evaluate_picks_keypoints_for_a_layout_with_oks_sigmas():
    gt = _synthetic_gt()
    preds = _perturbed(gt, 2)
    assert evaluate(gt, preds, FIVE) == evaluate_keypoints(gt, preds, FIVE)


# -- refusals ---------------------------------------------------------------------------------------------
def _bad_pred(edit) -> list[dict]:
    preds = _as_preds(_synthetic_gt())
    edit(preds[2])
    return preds


@pytest.mark.parametrize("edit, match", [
    (lambda r: r.update(keypoints=r["keypoints"][:-3]),
     r"prediction record 2, field 'keypoints': expected a list of 15 numbers "
     r"\(5 points x 3 of layout 'FIVE'\), got length 12"),
    (lambda r: r["keypoints"].__setitem__(4, float("nan")),
     r"prediction record 2, field 'keypoints'\[4\] \(point 1, y\): expected a finite number, got nan"),
    (lambda r: r.update(image_id=99), r"prediction record 2, field 'image_id': 99 is not an image of the GT"),
    (lambda r: r.update(score=float("inf")), r"prediction record 2, field 'score': .*inf"),
    (lambda r: r.update(back_score="high"), r"prediction record 2, field 'back_score': .*'high'"),
    (lambda r: r.pop("score"), r"prediction record 2: required field 'score' is missing"),
])
def test_bad_prediction_is_refused_by_index_and_field(edit, match):
    with pytest.raises(EvalInputError, match=match):
        evaluate_keypoints(_synthetic_gt(), _bad_pred(edit), FIVE)


@pytest.mark.parametrize("edit, match", [
    (lambda a: a.update(keypoints=a["keypoints"] + [1.0, 2.0, 2.0]),
     r"GT annotations\[3\] \(id 103\), field 'keypoints': expected a list of 15 numbers "
     r"\(5 points x 3 of layout 'FIVE'\), got length 18"),
    (lambda a: a["keypoints"].__setitem__(0, float("nan")),
     r"GT annotations\[3\] \(id 103\), field 'keypoints'\[0\] \(point 0, x\): expected a finite number"),
    (lambda a: a.update(area=float("nan")), r"GT annotations\[3\] \(id 103\), field 'area'"),
    (lambda a: a.update(bbox=[1, 2, 3]), r"GT annotations\[3\] \(id 103\), field 'bbox': expected 4 finite"),
    (lambda a: a.pop("bbox"), r"GT annotations\[3\] \(id 103\): required field 'bbox' is missing"),
])
def test_bad_gt_is_refused_by_index_id_and_field(edit, match):
    gt = _synthetic_gt()
    edit(gt["annotations"][3])
    with pytest.raises(EvalInputError, match=match):
        evaluate_keypoints(gt, [], FIVE)


def test_a_layout_without_oks_sigmas_is_refused():
    gt = _synthetic_gt()
    no_sigmas = Layout.from_dict({**FIVE.to_dict(), "name": "NOSIG", "oks_sigmas": None})
    for layout in (BODY_135, BODY_FOOT, no_sigmas):
        match = rf"layout '{layout.name}' has no oks_sigmas.*evaluate_wholebody"
        with pytest.raises(ValueError, match=match):
            evaluate_keypoints(gt, [], layout)


def test_unknown_engine_is_an_error():
    with pytest.raises(ValueError, match="engine='nonesuch'"):
        evaluate_keypoints(_synthetic_gt(), [], FIVE, engine="nonesuch")


def test_empty_predictions_score_zero():
    got = evaluate_keypoints(_synthetic_gt(), [], FIVE)
    assert got == {part: {s: 0.0 for s in STATS} for part in ("front", "back")}
