"""``python -m src.layout``: a layout from a COCO keypoint file, flip pairs from names, and its refusals."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from src.core.skeleton import BODY_FOOT, Layout
from src.layout import DEFAULT_OKS_SIGMA, derive_flip, layout_from_coco, load_coco

ROOT = Path(__file__).resolve().parents[1]

NAMES = ["nose", "left_eye", "right_eye", "left_wrist", "right_wrist"]
SKELETON = [[1, 2], [1, 3], [2, 4], [3, 5]]  # 1-based, as COCO writes it


def coco(names=NAMES, skeleton=SKELETON, name="thing", extra=()) -> dict:
    cats = [{"id": 1, "name": name, "supercategory": name, "keypoints": list(names), "skeleton": skeleton}]
    return {"images": [], "annotations": [], "categories": cats + list(extra)}


def write(tmp_path: Path, data, name="ann.json") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def cli(*args, cwd=ROOT, env=None):
    base = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    env = {**base, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "src.layout", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


def refused(match: str, *args, **kwargs) -> str:
    with pytest.raises(ValueError) as err:
        layout_from_coco(*args, **kwargs)
    text = str(err.value)
    assert "\n" not in text and match in text, text
    return text


def flip_indices(names, flip) -> set[frozenset]:
    at = {n: i for i, n in enumerate(names)}
    return {frozenset((at[a], at[b])) for a, b in flip}


# -- derive_flip ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("a, b", [
    ("left_eye", "right_eye"), ("l_eye", "r_eye"), ("L_Eye", "R_Eye"), ("LEye", "REye"),
    ("LeftHand", "RightHand"), ("eye_left", "eye_right"), ("wrist_l", "wrist_r"), ("LEFT_KNEE", "RIGHT_KNEE"),
    ("Left_Eye", "Right_Eye"), ("hand_left_thumb", "hand_right_thumb"), ("left-ear", "right-ear"),
    ("L_F_Paw", "R_F_Paw"), ("left eye", "right eye"), ("EyeLeft", "EyeRight"),
])
def test_derive_flip_name_styles(a, b):
    assert derive_flip(["nose", b, a]) == [(b, a)]  # channel order inside the pair
    assert derive_flip([a, "nose", b]) == [(a, b)]


@pytest.mark.parametrize("names", [
    ["lip", "rip"], ["leg", "reg"], ["lefthand", "righthand"], ["left_eye", "Right_Eye"], ["nose"],
    ["left_eye", "right_ear"], ["ear_l", "eye_r"], ["L", "R_x"], ["LEFTEYE", "RIGHTEYE"],
])
def test_derive_flip_pairs_only_whole_side_words_with_an_existing_mirror(names):
    assert derive_flip(names) == []


def test_derive_flip_mixed_list_and_no_mirror():
    names = ["nose", "left_eye", "right_eye", "lip", "rip", "l_ear", "r_ear", "left_hand", "tail"]
    assert derive_flip(names) == [("left_eye", "right_eye"), ("l_ear", "r_ear")]


def test_derive_flip_finds_every_body_foot_pair():
    assert {frozenset(p) for p in derive_flip(BODY_FOOT.names)} == {frozenset(p) for p in BODY_FOOT.flip}


# -- layout_from_coco ----------------------------------------------------------------------------------------
def test_layout_from_small_file_and_round_trip(tmp_path):
    layout, notes = layout_from_coco(coco(), sigmas=[0.026, 0.025, 0.025, 0.062, 0.062],
                                     joint_weights=[1, 1, 1, 1.5, 1.5], target_sigma=5.0)
    assert layout.name == "thing" and layout.names == tuple(NAMES)
    assert layout.pairs == ((0, 1), (0, 2), (1, 3), (2, 4))
    assert layout.flip == (("left_eye", "right_eye"), ("left_wrist", "right_wrist"))
    assert layout.oks_sigmas == (0.026, 0.025, 0.025, 0.062, 0.062)
    assert layout.sigmas == (5.0,) * 5 and layout.joint_weights == (1, 1, 1, 1.5, 1.5)
    assert layout.parts == {"keypoints": (0, 1, 2, 3, 4)}
    assert layout.limbs == {"keypoints": tuple((NAMES[a - 1], NAMES[b - 1]) for a, b in SKELETON)}
    assert not any("WARNING" in n for n in notes)
    layout.save(tmp_path / "l.yaml")
    assert Layout.load(tmp_path / "l.yaml") == layout


def test_default_sigmas_warn_and_name_option():
    layout, notes = layout_from_coco(coco(), name="mine")
    assert layout.name == "mine" and layout.oks_sigmas == (DEFAULT_OKS_SIGMA,) * 5
    assert layout.sigmas == (7.0,) * 5 and layout.joint_weights is None
    warning = [n for n in notes if n.startswith("WARNING")]
    assert len(warning) == 1 and "AP depends" in warning[0] and "sigmas=[" in warning[0]


def test_skeleton_option_by_name_or_index_replaces_the_files():
    data = coco(skeleton=[[9, 1]])
    layout, _ = layout_from_coco(data, skeleton=[["nose", "left_eye"], [1, 3], ["left_eye", 4], [3, "5"]])
    assert layout.pairs == ((0, 1), (0, 2), (1, 3), (2, 4))


def test_cycles_repeats_and_separate_pieces_are_allowed_with_notes():
    layout, notes = layout_from_coco(coco(skeleton=SKELETON + [[2, 3], [3, 2]]))
    assert layout.num_pairs == 6 and any("repeat" in n for n in notes)
    _, notes = layout_from_coco(coco(skeleton=[[1, 2], [3, 1], [4, 5]]))
    assert any("2 separate pieces" in n for n in notes)


def test_refuses_index_outside_the_keypoints():
    text = refused("skeleton pair 2 [6, 1]", coco(skeleton=[[1, 2], [6, 1]]), source="x.json")
    assert "5 keypoints" in text and "skeleton=[[nose,left_eye],...]" in text
    refused("pair 1 [0, 1]", coco(skeleton=[[0, 1]]))  # a 0-based file
    refused("skeleton= pair 1 ['nose', 'tail'] names 'tail'", coco(), skeleton=[["nose", "tail"]])


def test_refuses_self_pair_and_unreached_keypoint():
    refused("skeleton pair 3 [3, 3] joins 'right_eye' to itself", coco(skeleton=SKELETON[:2] + [[3, 3]]))
    text = refused("keypoint(s) ['left_wrist', 'right_wrist'] are in no pair", coco(skeleton=SKELETON[:2]))
    assert "decoder could never attach" in text
    refused("no skeleton", coco(skeleton=[]))


def test_refuses_counts_and_bad_files(tmp_path):
    refused("sigmas: 4 values given for 5 keypoints", coco(), sigmas=[0.1] * 4)
    refused("joint_weights: 6 values given for 5 keypoints", coco(), joint_weights=[1] * 6)
    refused("sigmas: every value must be > 0", coco(), sigmas=[0.1, 0.1, 0, 0.1, 0.1])
    refused("no categories", {"images": []}, source="a.json")
    refused("category 'thing' has no 'keypoints'", coco(names=[]))
    with pytest.raises(FileNotFoundError, match="from_coco=.*nope.json: no such file"):
        load_coco(tmp_path / "nope.json")
    with pytest.raises(ValueError, match="not JSON"):
        load_coco(write(tmp_path, "{oops"))


def test_categories_shared_or_picked():
    other = {"id": 2, "name": "cow", "keypoints": ["a", "b"], "skeleton": [[1, 2]]}
    text = refused("2 categories with different keypoint lists", coco(extra=[other]), source="zoo.json")
    assert "['thing', 'cow']" in text and "category=NAME" in text
    layout, _ = layout_from_coco(coco(extra=[other]), category="cow")
    assert layout.name == "cow" and layout.names == ("a", "b")
    refused("no category 'dog'; the file has ['thing', 'cow']", coco(extra=[other]), category="dog")
    twin = {**coco()["categories"][0], "id": 2, "name": "twin"}
    layout, notes = layout_from_coco(coco(extra=[twin]), source="/data/zoo.json")
    assert layout.name == "zoo" and any("2 categories share" in n for n in notes)


# -- the CLI -------------------------------------------------------------------------------------------------
def test_cli_writes_the_layout_and_refuses_with_exit_2(tmp_path):
    ann = write(tmp_path, coco())
    out = tmp_path / "layouts" / "thing.yaml"
    done = cli(f"from_coco={ann}", f"out={out}", "sigmas=[0.026,0.025,0.025,0.062,0.062]", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "5 keypoints, 4 pairs" in done.stdout and "left_eye<->right_eye" in done.stdout
    assert f"wrote {out}" in done.stdout and "python -m src.train layout=" in done.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ann.json", "layouts"]  # no hydra outputs
    expected, _ = layout_from_coco(coco(), sigmas=[0.026, 0.025, 0.025, 0.062, 0.062])
    assert Layout.load(out) == expected

    shown = cli(f"show={out}", cwd=tmp_path)
    assert shown.returncode == 0 and "layout thing: 5 keypoints, 4 pairs" in shown.stdout

    bad = write(tmp_path, coco(skeleton=[[1, 2], [7, 1]]), "bad.json")
    out2 = tmp_path / "bad.yaml"
    no = cli(f"from_coco={bad}", f"out={out2}", cwd=tmp_path)
    assert no.returncode == 1 and not out2.exists() and "Traceback" not in no.stderr
    assert no.stderr.strip().splitlines()[-1].startswith("error: ") and "pair 2 [7, 1]" in no.stderr
    missing = cli(f"from_coco={tmp_path / 'nope.json'}", f"out={out2}", cwd=tmp_path)
    assert missing.returncode == 1 and "nope.json: no such file" in missing.stderr and not out2.exists()
    loud = cli(f"from_coco={bad}", f"out={out2}", "--debug", cwd=tmp_path)
    assert loud.returncode != 0 and "Traceback" in loud.stderr


# -- real files (../shared/fixtures/custom) ------------------------------------------------------------------
def _meta(fixtures: Path, name: str) -> tuple[dict, dict]:
    folder = fixtures / "custom" / name
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent")
    data = json.loads((folder / f"test_{name}.json").read_text())
    return data, json.loads((folder / "meta.json").read_text())


def test_crowdpose_wrong_skeleton_refused_then_fixed(fixtures, tmp_path):
    data, meta = _meta(fixtures, "crowdpose")
    text = refused("skeleton pair 1 [16, 14]", data, source="test_crowdpose.json")
    assert "14 keypoints" in text
    names = data["categories"][0]["keypoints"]
    rename = dict(zip(meta["keypoints"], names, strict=True))  # meta's top_head is the file's head
    assert rename["top_head"] == "head" and all(rename[n] == n for n in meta["keypoints"] if n != "top_head")
    skeleton = [[rename[a], rename[b]] for a, b in meta["skeleton_by_name"]]
    layout, notes = layout_from_coco(data, sigmas=meta["sigmas"], skeleton=skeleton)
    assert layout.num_keypoints == 14 and layout.num_pairs == len(skeleton)
    meta_flip = [[rename[a], rename[b]] for a, b in meta["flip_pairs_by_name"]]
    assert flip_indices(names, layout.flip) == flip_indices(names, meta_flip)
    assert layout.oks_sigmas == tuple(meta["sigmas"])
    layout.save(tmp_path / "crowdpose.yaml")
    assert Layout.load(tmp_path / "crowdpose.yaml") == layout


def test_ap10k_one_layout_from_54_species(fixtures):
    data, meta = _meta(fixtures, "ap10k")
    assert len(data["categories"]) == 54
    layout, notes = layout_from_coco(data, sigmas=meta["sigmas"], source="test_ap10k.json")
    assert layout.name == "test_ap10k" and any("54 categories share" in n for n in notes)
    # the file says left_front_paw where meta says L_F_Paw: same channel order, so compare by index
    assert layout.num_keypoints == len(meta["keypoints"])
    expected = flip_indices(meta["keypoints"], meta["flip_pairs_by_name"])
    assert flip_indices(layout.names, layout.flip) == expected
    assert flip_indices(meta["keypoints"], derive_flip(meta["keypoints"])) == expected  # MMPose's L_/R_ names
    by_name = {frozenset(layout.names[i] for i in p) for p in layout.pairs}
    assert by_name == {frozenset(layout.names[meta["keypoints"].index(n)] for n in p)
                       for p in meta["skeleton_by_name"]}
