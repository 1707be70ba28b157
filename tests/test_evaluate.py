"""The COCO-WholeBody evaluator against the reference (xtcocotools) numbers, its input checks, and the CLI."""

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from src.evaluation import evaluator as we
from src.evaluation.evaluator import STATS, EvalInputError, evaluate_wholebody, load_predictions

ROOT = Path(__file__).resolve().parents[1]
EXPECTED = "coco_wholebody_eval/expected_metrics_xtcocotools.json"
CASES = [
    "cocowholebody_example_gt__example_pred",
    "cocowholebody_example_gt__xtcocoapi_example_wholebody_preds",
    "mmpose_test_coco_wholebody__example_pred_4imgs",
    "mmpose_test_coco_wholebody__gt_as_pred",
    "mmpose_test_coco__xtcocoapi_example_coco_preds",
]
PRED_4IMGS = "coco_wholebody_eval/example_pred_4imgs.json"
GT_WB = "coco/test_coco_wholebody.json"


def _json(path: Path):
    with open(path) as f:
        return json.load(f)


def _gt_as_pred(gt: dict) -> list[dict]:
    """Every GT person re-emitted as a detection with score 1 (the reference's 'GT as prediction' case)."""
    return [{"image_id": a["image_id"], "category_id": a["category_id"], "score": 1.0,
             **{f: a[f] for f in we.FIELDS if f in a}} for a in gt["annotations"]]


def _case(fixtures: Path, name: str) -> tuple[dict, list[dict], dict]:
    case = _json(fixtures / EXPECTED)[name]
    gt = _json(fixtures / case["gt"])
    preds = _json(fixtures / case["pred"]) if case["pred"].endswith(".json") else _gt_as_pred(gt)
    return gt, preds, case["metrics"]


def test_expected_file_holds_exactly_these_cases(fixtures):
    assert sorted(k for k in _json(fixtures / EXPECTED) if not k.startswith("_")) == sorted(CASES)


@pytest.mark.parametrize("name", CASES)
def test_reproduces_xtcocotools(fixtures, name):
    gt, preds, expected = _case(fixtures, name)
    got = evaluate_wholebody(gt, preds)
    for part, stats in expected.items():
        assert list(stats) == list(STATS)
        for stat, value in stats.items():
            assert got[part][stat] == pytest.approx(value, abs=1e-4), (part, stat)
    if "lefthand" in expected:
        assert set(got) == set(expected) | {"hand"}
        for stat in STATS:
            assert got["hand"][stat] == pytest.approx((got["lefthand"][stat] + got["righthand"][stat]) / 2)
    else:  # plain COCO GT: body only
        assert set(got) == {"body"}


def test_gt_path_and_dict_agree_and_inputs_are_not_modified(fixtures):
    gt, preds, _ = _case(fixtures, "mmpose_test_coco_wholebody__example_pred_4imgs")
    gt0, preds0 = copy.deepcopy(gt), copy.deepcopy(preds)
    assert evaluate_wholebody(fixtures / GT_WB, preds) == evaluate_wholebody(gt, preds)
    assert gt == gt0 and preds == preds0


def test_detection_without_points_in_a_part_is_dropped_for_that_part(fixtures):
    gt = _json(fixtures / GT_WB)
    preds = _gt_as_pred(gt)
    # A top-scored extra person on an image with a labelled face, with every face/hand point unset: it is a
    # false positive for body (its body points count), and absent for face and the hands.
    extra = copy.deepcopy(preds[0])
    extra["score"] = 2.0
    for f in ("face_kpts", "lefthand_kpts", "righthand_kpts"):
        extra[f] = [0.0] * len(extra[f])
    extra["keypoints"] = [x + 50.0 if i % 3 < 2 else x for i, x in enumerate(extra["keypoints"])]
    got = evaluate_wholebody(gt, [*preds, extra])
    assert got["face"]["AP"] == got["lefthand"]["AP"] == got["righthand"]["AP"] == 1.0
    assert got["body"]["AP"] < 1.0


def test_part_score_ranks_the_part_and_falls_back_to_score(fixtures):
    gt = _json(fixtures / GT_WB)
    preds = _gt_as_pred(gt)
    extra = copy.deepcopy(preds[0])  # a duplicate of a labelled face, displaced: a false positive everywhere
    extra["face_kpts"] = [x + 80.0 if i % 3 < 2 else x for i, x in enumerate(extra["face_kpts"])]
    extra["score"] = 2.0
    ranked_first = evaluate_wholebody(gt, [*preds, extra])["face"]["AP"]
    extra["face_score"] = 0.5  # ranked below every true face now
    assert ranked_first < 1.0
    assert evaluate_wholebody(gt, [*preds, extra])["face"]["AP"] == 1.0


def test_crowd_and_unlabelled_gt_are_ignored_for_a_part(fixtures):
    gt = _json(fixtures / GT_WB)
    has_rhand = [i for i, a in enumerate(gt["annotations"]) if any(v > 0 for v in a["righthand_kpts"][2::3])]
    preds = _gt_as_pred(gt)
    # Only the right hands are found: people without a labelled right hand must not count as misses.
    only = [preds[i] for i in has_rhand]
    assert evaluate_wholebody(gt, only)["righthand"] == pytest.approx({s: 1.0 for s in STATS})
    # A crowd person is no GT either: missing it costs nothing; its own points are not required.
    crowd = copy.deepcopy(gt)
    crowd["annotations"][has_rhand[0]]["iscrowd"] = 1
    got = evaluate_wholebody(crowd, only[1:])["righthand"]
    assert got["AP"] == 1.0 and got["AR"] == 1.0
    assert evaluate_wholebody(gt, only[1:])["righthand"]["AR"] < 1.0


def test_empty_predictions_give_zero_and_minus_one_where_no_gt(fixtures):
    got = evaluate_wholebody(fixtures / GT_WB, [])
    for part, stats in got.items():
        for stat, value in stats.items():
            expected = -1.0 if (part, stat) in {("face", "AP (M)"), ("face", "AR (M)")} else 0.0
            assert value == expected, (part, stat)


def _bad(fixtures: Path, edit) -> list[dict]:
    preds = _json(fixtures / PRED_4IMGS)
    edit(preds[3])
    return preds


@pytest.mark.parametrize("edit, match", [
    (lambda r: r.update(image_id=123456789), r"record 3, field 'image_id': 123456789"),
    (lambda r: r.update(keypoints=r["keypoints"][:-3]), r"record 3, field 'keypoints': .*51.*length 48"),
    (lambda r: r.update(face_kpts=r["face_kpts"] + [1.0]), r"record 3, field 'face_kpts': .*204.*length 205"),
    (lambda r: r["lefthand_kpts"].__setitem__(4, float("nan")), r"record 3, field 'lefthand_kpts'\[4\].*nan"),
    (lambda r: r["keypoints"].__setitem__(0, float("inf")), r"record 3, field 'keypoints'\[0\] .*inf"),
    (lambda r: r["foot_kpts"].__setitem__(1, float("-inf")), r"record 3, field 'foot_kpts'\[1\] .*-inf"),
    (lambda r: r["keypoints"].__setitem__(2, "high"), r"record 3, field 'keypoints'\[2\] .*'high'"),
    (lambda r: r.update(score=float("nan")), r"record 3, field 'score'"),
    (lambda r: r.pop("keypoints"), r"record 3: required field 'keypoints' is missing"),
])
def test_bad_prediction_record_names_index_and_field(fixtures, edit, match):
    with pytest.raises(EvalInputError, match=match):
        evaluate_wholebody(fixtures / GT_WB, _bad(fixtures, edit))


def test_prediction_file_must_be_a_json_list(fixtures, tmp_path):
    path = tmp_path / "pred.json"
    path.write_text('{"image_id": 785}')
    with pytest.raises(EvalInputError, match="must hold a JSON list.*dict"):
        load_predictions(path)
    path.write_text("[{]")
    with pytest.raises(EvalInputError, match="not valid JSON"):
        load_predictions(path)
    with pytest.raises(EvalInputError, match="must be a list"):
        evaluate_wholebody(fixtures / GT_WB, {"image_id": 785})
    assert issubclass(EvalInputError, ValueError)


def test_bad_gt_names_the_annotation_and_field(fixtures, tmp_path):
    gt = _json(fixtures / GT_WB)
    del gt["annotations"][5]["area"]
    with pytest.raises(EvalInputError, match=r"GT annotations\[5\]: required field 'area' is missing"):
        evaluate_wholebody(gt, [])
    gt = _json(fixtures / GT_WB)
    gt["annotations"][2]["face_kpts"] = gt["annotations"][2]["face_kpts"][:-3]
    with pytest.raises(EvalInputError, match=r"GT annotations\[2\], field 'face_kpts'.*length 201"):
        evaluate_wholebody(gt, [])
    (tmp_path / "gt.json").write_text("[]")
    with pytest.raises(EvalInputError, match="COCO JSON object"):
        evaluate_wholebody(tmp_path / "gt.json", [])


def test_format_table_has_a_row_per_part(fixtures):
    table = we.format_table(evaluate_wholebody(fixtures / GT_WB, _gt_as_pred(_json(fixtures / GT_WB))))
    lines = table.splitlines()
    assert lines[0].split()[0] == "part" and "AR (L)" in lines[0]
    assert [ln.split()[0] for ln in lines[2:]] == ["body", "foot", "face", "lefthand", "righthand",
                                                    "wholebody", "hand"]
    assert "1.000" in lines[2] and "-1.000" in lines[4]


def _cli(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "src.evaluate", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_cli_writes_metrics_and_nothing_else(fixtures, tmp_path):
    name = "mmpose_test_coco_wholebody__example_pred_4imgs"
    case = _json(fixtures / EXPECTED)[name]
    res = _cli(tmp_path, f"gt={fixtures / case['gt']}", f"pred={fixtures / case['pred']}", "out=res/m.json")
    assert res.returncode == 0, res.stderr
    assert "wholebody" in res.stdout and "AP (M)" in res.stdout
    got = _json(tmp_path / "res" / "m.json")
    for part, stats in case["metrics"].items():
        for stat, value in stats.items():
            assert got[part][stat] == pytest.approx(value, abs=1e-4), (part, stat)
    assert got["hand"]["AP"] == pytest.approx((got["lefthand"]["AP"] + got["righthand"]["AP"]) / 2)
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == ["res", "res/m.json"]


def test_cli_bad_input_exits_non_zero_with_the_message(fixtures, tmp_path):
    preds = _bad(fixtures, lambda r: r["keypoints"].__setitem__(0, float("nan")))
    (tmp_path / "pred.json").write_text(json.dumps(preds))
    res = _cli(tmp_path, f"gt={fixtures / GT_WB}", "pred=pred.json", "out=m.json")
    assert res.returncode != 0
    assert "prediction record 3, field 'keypoints'[0]" in res.stderr
    assert not (tmp_path / "m.json").exists()
    res = _cli(tmp_path, f"gt={fixtures / GT_WB}")
    assert res.returncode != 0 and "pred=PRED.json" in res.stderr


# -- engines: faster-coco-eval (default) against pycocotools (reference) ------------------------------------
def _max_diff(a: dict, b: dict) -> float:
    assert set(a) == set(b) and all(set(a[p]) == set(b[p]) for p in a)
    return max(abs(a[p][s] - b[p][s]) for p in a for s in a[p])


@pytest.mark.parametrize("name", CASES)
def test_faster_engine_equals_pycocotools_on_every_fixture_case(fixtures, name):
    gt, preds, _ = _case(fixtures, name)
    assert _max_diff(evaluate_wholebody(gt, preds, engine="faster"),
                     evaluate_wholebody(gt, preds, engine="pycocotools")) <= 1e-6


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_faster_engine_equals_pycocotools_on_seeded_crowds(seed):
    from bench.evaluate import synthetic

    gt, preds = synthetic(images=25, people=120, seed=seed)
    assert _max_diff(evaluate_wholebody(gt, preds, engine="faster"),
                     evaluate_wholebody(gt, preds, engine="pycocotools")) <= 1e-6


def test_unknown_engine_is_an_error(fixtures):
    gt, preds, _ = _case(fixtures, CASES[0])
    with pytest.raises(ValueError, match="engine"):
        evaluate_wholebody(gt, preds, engine="nonesuch")
