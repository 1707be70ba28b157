"""The BODY_135 layout against the spec (openpose_body135_spec.md §1–2); the mappings on real annotations."""

import json
import re
from pathlib import Path

import numpy as np
import pytest

from sharding.keypoints import (
    coco_visibility,
    from_coco17,
    from_coco23,
    from_face,
    from_hand21,
    from_hand42,
    from_mpii16,
    from_wholebody133,
)
from src.core.skeleton import BODY_135, BODY_FOOT, Layout

MIRROR = {"lhand": "rhand", "rhand": "lhand"}
# mmpose's 61 COCO-WholeBody flip pairs in the 133 layout (coco_wholebody.md §A.2).
WB133_FLIP = ([(1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16), (17, 20), (18, 21),
               (19, 22)]
              + [(23 + i, 39 - i) for i in range(8)] + [(40 + i, 49 - i) for i in range(5)]
              + [(54, 58), (55, 57), (59, 68), (60, 67), (61, 66), (62, 65), (63, 70), (64, 69), (71, 77),
                 (72, 76), (73, 75), (78, 82), (79, 81), (83, 87), (84, 86), (88, 90)]
              + [(91 + i, 112 + i) for i in range(21)])
WB_FIELDS = ("keypoints", "foot_kpts", "face_kpts", "lefthand_kpts", "righthand_kpts")
GROUPS_OF_WB = ["body", "foot", "face", "lhand", "rhand"]


def _json(path: Path):
    with open(path) as f:
        return json.load(f)


def _wb(fixtures: Path) -> list[dict]:
    return _json(fixtures / "coco" / "test_coco_wholebody.json")["annotations"]


def _present(kp: np.ndarray) -> np.ndarray:
    """Which points a mapping says its source has (anything but 'not in dataset')."""
    return kp[:, 2] != 4


# -- layout ------------------------------------------------------------------------------------------------
def test_names_and_groups():
    assert len(BODY_135.names) == len(set(BODY_135.names)) == BODY_135.num_keypoints == 135
    sizes = {g: len(r) for g, r in BODY_135.groups.items()}
    assert sizes == {"body": 17, "mpii": 2, "foot": 6, "lhand": 20, "rhand": 20, "face": 70}
    assert [i for r in BODY_135.groups.values() for i in r] == list(range(135))  # contiguous, in order
    spots = {0: "Nose", 9: "LWrist", 10: "RWrist", 17: "UpperNeck", 18: "HeadTop", 19: "LBigToe", 24: "RHeel",
             25: "LThumb1CMC", 44: "LPinky4FingerTip", 45: "RThumb1CMC", 64: "RPinky4FingerTip",
             65: "FaceContour0", 87: "LEyeBrow4", 91: "LEyeBrow0", 133: "RPupil", 134: "LPupil"}
    assert {k: BODY_135.names[k] for k in spots} == spots
    assert [BODY_135.group_of(k) for k in (9, 44, 134)] == ["body", "lhand", "face"]
    assert BODY_135.num_pairs == 152


def test_names_and_pairs_equal_the_spec_tables(fixtures):
    spec_path = fixtures.parent / "docs" / "openpose_body135_spec.md"
    if not spec_path.is_file():
        pytest.skip("spec document absent")
    spec = spec_path.read_text()
    names = spec[spec.index("### 1.1"):spec.index("Block structure")]
    assert dict((int(i), n) for i, n in re.findall(r"(\d+) (\w+)", names)) == dict(enumerate(BODY_135.names))
    pairs = spec[spec.index("### 2.1"):spec.index("### 2.2")]
    table = [(int(k), int(a), int(b)) for k, a, b in re.findall(r"(\d+):(\d+)-(\d+)", pairs)]
    assert [k for k, _, _ in table] == list(range(152))
    assert [(a, b) for _, a, b in table] == list(BODY_135.pairs)


def test_pairs_in_range_unique_and_one_connected_graph():
    assert len(BODY_135.pairs) == 152
    assert np.array_equal(BODY_135.pairs_a, [a for a, _ in BODY_135.pairs])
    assert np.array_equal(BODY_135.pairs_b, [b for _, b in BODY_135.pairs])
    assert all(0 <= a < 135 and 0 <= b < 135 and a != b for a, b in BODY_135.pairs)
    assert len({frozenset(p) for p in BODY_135.pairs}) == 152
    # one connected graph over all 135 points (union-find)
    parent = list(range(135))

    def root(i):
        while parent[i] != i:
            i = parent[i]
        return i

    for a, b in BODY_135.pairs:
        parent[root(a)] = root(b)
    assert len({root(i) for i in range(135)}) == 1
    # spec §2.2 totals: 35 body/foot/MPII PAFs, 40 hand PAFs, 77 face PAFs (3 of them body -> face)
    assert sum(a < 25 and b < 25 for a, b in BODY_135.pairs) == 35
    assert sum(25 <= max(a, b) < 65 for a, b in BODY_135.pairs) == 40
    assert sum(max(a, b) >= 65 for a, b in BODY_135.pairs) == 77


# -- flip --------------------------------------------------------------------------------------------------
def test_flip_is_an_involution_mapping_each_group_onto_its_mirror():
    assert len(BODY_135.flip_pairs) == 61
    flat = [i for p in BODY_135.flip_pairs for i in p]
    assert len(set(flat)) == 122 and all(0 <= i < 135 for i in flat)
    f = BODY_135.flip_index
    assert sorted(f) == list(range(135)) and np.array_equal(f[f], np.arange(135))
    assert sum(f != np.arange(135)) == 122
    for g, idx in BODY_135.groups.items():
        assert sorted(f[list(idx)]) == list(BODY_135.groups[MIRROR.get(g, g)]), g
    assert BODY_135.flip_groups(["body", "lhand", "face"]) == ["body", "face", "rhand"]
    # body, foot, hands and pupils: the mirror is the same name with L and R swapped
    for a, b in BODY_135.flip_pairs:
        if a < 65 or a >= 133:
            na, nb = BODY_135.names[a], BODY_135.names[b]
            assert {na[0], nb[0]} == {"L", "R"} and na[1:] == nb[1:], (na, nb)
    # the body and hand limbs are mirror-symmetric as a set
    limbs = {frozenset(p) for p in BODY_135.pairs if max(p) < 65}
    assert {frozenset((int(f[a]), int(f[b]))) for a, b in limbs} == limbs


def test_flip_pairs_equal_coco_wholebody_ones_plus_pupils():
    to135 = [i for idx in BODY_135.wholebody_parts.values() for i in idx]
    assert len(to135) == 133
    mapped = {frozenset((to135[a], to135[b])) for a, b in WB133_FLIP}  # hand wrists collapse onto (9, 10)
    assert mapped | {frozenset((133, 134))} == {frozenset(p) for p in BODY_135.flip_pairs}


# The flip table as it was written by index before the Layout object (kept literally to pin the name table).
OLD_FACE_FLIP = ([(f, 16 - f) for f in range(8)] + [(17 + i, 26 - i) for i in range(5)] + [(31, 35), (32, 34)]
                 + [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]
                 + [(48, 54), (49, 53), (50, 52), (59, 55), (58, 56), (60, 64), (61, 63), (67, 65)]
                 + [(68, 69)])
OLD_FLIP_PAIRS = ([(1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16), (19, 22), (20, 23),
                   (21, 24)]
                  + [(25 + i, 45 + i) for i in range(20)]
                  + [(65 + a, 65 + b) for a, b in OLD_FACE_FLIP])


def test_flip_table_by_name_equals_the_old_index_table():
    assert BODY_135.flip_pairs == OLD_FLIP_PAIRS
    perm = np.arange(135)
    for a, b in OLD_FLIP_PAIRS:
        perm[a], perm[b] = b, a
    assert np.array_equal(BODY_135.flip_index, perm)
    assert all(isinstance(a, str) and isinstance(b, str) for a, b in BODY_135.flip)  # written by name


def test_flip_index_is_an_involution():
    f = BODY_135.flip_index
    assert np.array_equal(f[f], np.arange(BODY_135.num_keypoints))


def test_every_name_in_the_flip_table_and_group_extras_exists():
    names = set(BODY_135.names)
    assert {n for pair in BODY_135.flip for n in pair} <= names
    assert {n for extras in BODY_135.group_extras.values() for n in extras} <= names
    assert set(BODY_135.group_extras) <= set(BODY_135.groups)
    with pytest.raises(KeyError, match="no keypoint 'LTail'"):
        BODY_135.index("LTail")


def test_groups_partition_the_keypoints_and_channel_count():
    flat = sorted(i for r in BODY_135.groups.values() for i in r)
    assert flat == list(range(135))
    assert BODY_135.num_keypoints == 135 and BODY_135.num_pairs == 152 and BODY_135.num_channels == 439
    assert BODY_135.name == "BODY_135"


def test_named_helpers():
    assert BODY_135.index("LShoulder") == 5 and BODY_135.indices(["LWrist", "RWrist"]) == [9, 10]
    assert BODY_135.group_slice("face") == slice(65, 135)
    assert BODY_135.hand("left") == [9, *range(25, 45)] == list(BODY_135.wholebody_parts["lefthand_kpts"])
    assert BODY_135.hand("right") == [10, *range(45, 65)] == list(BODY_135.wholebody_parts["righthand_kpts"])
    with pytest.raises(ValueError, match="left' or 'right"):
        BODY_135.hand("up")


def test_sigmas():
    sigmas = np.asarray(BODY_135.sigmas)
    assert sigmas.shape == (135,)
    assert np.all(sigmas[:25] == 7.0) and np.all(sigmas[25:] == 5.75)


# -- mappings into BODY_135 --------------------------------------------------------------------------------
def test_coco_visibility_codes():
    assert coco_visibility([0, 1, 2, 0.3, 1.0, 2.0, -1]).tolist() == [2, 0, 1, 0, 0, 1, 2]


def test_from_coco17_on_real_annotations(fixtures):
    anns = _json(fixtures / "coco" / "test_coco.json")["annotations"]
    for ann in anns:
        src = np.asarray(ann["keypoints"], np.float32).reshape(17, 3)
        kp = from_coco17(ann["keypoints"])
        assert kp.shape == (135, 3) and kp.dtype == np.float32
        assert np.array_equal(_present(kp), BODY_135.labelled(["body"]))
        assert kp[:17, 2].tolist() == [{0: 2, 1: 0, 2: 1}[int(v)] for v in src[:, 2]]
        lab = src[:, 2] > 0
        assert np.array_equal(kp[:17, :2][lab], src[lab, :2]) and not kp[:17, :2][~lab].any()
    assert sum(int((np.asarray(a["keypoints"])[2::3] > 0).sum()) for a in anns) == 181


def test_from_coco23_puts_the_foot_at_19_to_24(fixtures):
    ann = _wb(fixtures)[0]
    kp = from_coco23(ann["keypoints"] + ann["foot_kpts"])
    assert np.array_equal(_present(kp), BODY_135.labelled(["body", "foot"]))
    foot = np.asarray(ann["foot_kpts"], np.float32).reshape(6, 3)
    assert np.array_equal(kp[19:25, :2], foot[:, :2]) and set(kp[19:25, 2].tolist()) <= {0, 1}
    assert np.array_equal(kp[:17], from_coco17(ann["keypoints"])[:17])
    assert [BODY_135.names[i] for i in range(19, 25)] == ["LBigToe", "LSmallToe", "LHeel", "RBigToe",
                                                          "RSmallToe", "RHeel"]


def test_from_wholebody133_codes_and_derived_points(fixtures):
    for ann in _wb(fixtures):
        kp = from_wholebody133(ann)
        assert np.array_equal(_present(kp), BODY_135.labelled(GROUPS_OF_WB))  # MPII: not in dataset
        for field, group in (("foot_kpts", "foot"), ("face_kpts", "face"), ("lefthand_kpts", "lhand"),
                             ("righthand_kpts", "rhand")):
            labelled = np.asarray(ann[field])[2::3] > 0
            codes = kp[list(BODY_135.groups[group]), 2]
            if not labelled.any():  # part not annotated for this person: masked in its box, pupils included
                assert np.all(codes == 3), (ann["id"], field)
        face = np.asarray(ann["face_kpts"], np.float32).reshape(68, 3)
        if (face[:, 2] > 0).all():  # pupils: mean of each eye contour (spec §1.2)
            assert np.allclose(kp[133, :2], face[36:42, :2].mean(0))
            assert np.allclose(kp[134, :2], face[42:48, :2].mean(0))
            assert kp[133, 2] <= 1 and kp[134, 2] <= 1
        # nose and eyes come from the body annotation, not from the face
        assert np.array_equal(kp[:3], from_coco17(ann["keypoints"])[:3])


def test_from_wholebody133_merges_the_hand_wrist_into_the_body_wrist(fixtures):
    ann = json.loads(json.dumps(_wb(fixtures)[1]))  # 198196: labelled left hand, labelled body wrist
    body_wrist = ann["keypoints"][27:30]
    assert body_wrist[2] > 0 and ann["lefthand_kpts"][2] > 0
    assert from_wholebody133(ann)[9].tolist() == [*body_wrist[:2], 1]  # the body wrist wins
    ann["keypoints"][27:30] = [0, 0, 0]
    hand_wrist = ann["lefthand_kpts"][:3]
    assert from_wholebody133(ann)[9].tolist() == pytest.approx([*hand_wrist[:2], 0])  # else the hand's


def test_from_mpii16_on_real_annotations(fixtures):
    for rec in _json(fixtures / "mpii" / "test_mpii.json"):
        joints, vis = np.asarray(rec["joints"], np.float32), np.asarray(rec["joints_vis"])
        kp = from_mpii16(joints, vis)
        assert np.array_equal(_present(kp), BODY_135.labelled(["mpii"]))
        for src, dst in ((13, 5), (12, 6), (8, 17), (9, 18)):
            if vis[src] > 0:
                assert kp[dst].tolist() == [*joints[src], 1]
    joints = np.asarray(rec["joints"], np.float32)
    vis = np.ones(16)
    vis[8] = 0
    kp = from_mpii16(joints, vis)
    assert kp[17].tolist() == [0, 0, 2] and kp[18, 2] == 1


@pytest.mark.parametrize("side, wrist, group", [("left", 9, "lhand"), ("right", 10, "rhand")])
def test_from_hand21_on_real_hands(fixtures, side, wrist, group):
    for ann in _json(fixtures / "onehand10k" / "test_onehand10k.json")["annotations"]:
        src = np.asarray(ann["keypoints"], np.float32).reshape(21, 3)
        kp = from_hand21(ann["keypoints"], side)
        assert np.array_equal(_present(kp), BODY_135.labelled([group]))
        order = [wrist, *BODY_135.groups[group]]
        lab = src[:, 2] > 0
        assert np.array_equal(kp[order, :2][lab], src[lab, :2])
        assert np.array_equal(kp[order, 2] <= 1, lab)
    with pytest.raises(ValueError, match="left' or 'right"):
        from_hand21(ann["keypoints"], "up")


def test_from_hand42(fixtures):
    anns = _json(fixtures / "onehand10k" / "test_onehand10k.json")["annotations"]
    left, right = anns[0]["keypoints"], anns[1]["keypoints"]
    kp = from_hand42(left + right)
    assert np.array_equal(_present(kp), BODY_135.labelled(["lhand", "rhand"]))
    l_idx, r_idx = [9, *BODY_135.groups["lhand"]], [10, *BODY_135.groups["rhand"]]
    assert np.array_equal(kp[l_idx], from_hand21(left, "left")[l_idx])
    assert np.array_equal(kp[r_idx], from_hand21(right, "right")[r_idx])


def test_from_face68_derives_nose_eyes_pupils(fixtures):
    for ann in _json(fixtures / "300w" / "test_300w.json")["annotations"]:
        src = np.asarray(ann["keypoints"], np.float32).reshape(68, 3)
        kp = from_face(ann["keypoints"])
        assert np.array_equal(_present(kp), BODY_135.labelled(["face"]))
        assert np.array_equal(kp[65:133, :2], src[:, :2])
        for dst, idx in ((0, [27, 28, 29, 30, 31, 32, 34, 35]), (1, range(42, 48)), (2, range(36, 42)),
                         (133, range(36, 42)), (134, range(42, 48))):
            assert np.allclose(kp[dst, :2], src[list(idx), :2].mean(0)), dst
            assert kp[dst, 2] == 0  # source v=1: labelled (occluded code) -> any 0 -> 0
    with pytest.raises(ValueError, match="68 or 70"):
        from_face(ann["keypoints"][:-3])


def test_from_face70_takes_the_pupils_given(fixtures):
    ann = _json(fixtures / "300w" / "test_300w.json")["annotations"][0]
    kpts = ann["keypoints"] + [500.0, 400.0, 2, 600.0, 410.0, 2]
    kp = from_face(kpts)
    assert kp[133].tolist() == [500, 400, 1] and kp[134].tolist() == [600, 410, 1]


def test_derived_point_visibility_rule_of_spec_1_3():
    """Averaged points: unlabelled mixed with labelled -> 3; all unlabelled -> 2; any occluded -> 0; or 1."""
    face = np.tile(np.array([[100.0, 50.0, 2.0]]), (68, 1))
    nose = [27, 28, 29, 30, 31, 32, 34, 35]
    assert from_face(face)[0, 2] == 1
    occluded = face.copy()
    occluded[28, 2] = 1
    assert from_face(occluded)[0].tolist() == [100, 50, 0]
    mixed = face.copy()
    mixed[29] = 0
    assert from_face(mixed)[0].tolist() == [0, 0, 3]
    gone = face.copy()
    gone[nose] = 0
    assert from_face(gone)[0].tolist() == [0, 0, 2]
    assert from_face(gone)[133, 2] == 1  # other derived points untouched


def test_labelled_keypoints_extras_and_errors():
    assert np.flatnonzero(BODY_135.labelled(["lhand"])).tolist() == [9, *range(25, 45)]
    assert np.flatnonzero(BODY_135.labelled(["mpii"])).tolist() == [5, 6, 17, 18]
    assert np.flatnonzero(BODY_135.labelled(["face"])).tolist() == [0, 1, 2, *range(65, 135)]
    with pytest.raises(ValueError, match="unknown keypoint group 'hands'"):
        BODY_135.labelled(["hands"])


# -- back to COCO-WholeBody --------------------------------------------------------------------------------
def test_round_trip_133_135_133_on_every_labelled_point(fixtures):
    """Exact up to the writer's 3 decimals (and float32): coordinates, labelled-ness, integer v.

    Hand wrists come back as the body wrists."""
    checked = 0
    for ann in _wb(fixtures):
        back = BODY_135.to_wholebody133(from_wholebody133(ann), as_gt=True)
        assert {k: len(v) for k, v in back.items()} == {f: 3 * n for f, n in
                                                         zip(WB_FIELDS, (17, 6, 68, 21, 21), strict=True)}
        for field in WB_FIELDS:
            src = np.asarray(ann[field], np.float64).reshape(-1, 3)
            out = np.asarray(back[field], np.float64).reshape(-1, 3)
            for i, ((x, y, v), (x2, y2, v2)) in enumerate(zip(src, out, strict=True)):
                if field.endswith("hand_kpts") and i == 0:
                    wrist = 9 if field.startswith("left") else 10
                    body = ann["keypoints"][3 * wrist:3 * wrist + 3]
                    if v > 0:  # every labelled hand wrist of the fixture has a labelled body wrist
                        assert body[2] > 0
                    # a hand without its own points keeps no wrist; else the wrist is the body's
                    hand_labelled = (src[1:, 2] > 0).any()
                    assert [x2, y2, v2] == (body if body[2] > 0 and hand_labelled else [0, 0, 0])
                    continue
                if v > 0:
                    checked += 1
                    assert v2 > 0 and abs(x2 - x) <= 6e-4 and abs(y2 - y) <= 6e-4, (ann["id"], field, i)
                    if v == int(v):
                        assert v2 == v
                    if x == int(x) and y == int(y):
                        assert (x2, y2) == (x, y)
                else:
                    assert (x2, y2, v2) == (0, 0, 0)
    hand_wrists = sum(a[f][2] > 0 for a in _wb(fixtures) for f in ("lefthand_kpts", "righthand_kpts"))
    assert checked + hand_wrists == 701  # every labelled point of the fixture (coco_wholebody.md §B.1)


def test_to_wholebody133_writes_confidences_as_they_are():
    kp = np.zeros((135, 3), np.float32)
    kp[:, 0], kp[:, 1], kp[:, 2] = np.arange(135), 2 * np.arange(135), 0.5
    out = BODY_135.to_wholebody133(kp)
    assert out["keypoints"][:6] == [0, 0, 0.5, 1, 2, 0.5]
    assert out["lefthand_kpts"][:6] == [9, 18, 0.5, 25, 50, 0.5]
    assert out["face_kpts"][-3:] == [132, 264, 0.5]


def test_body_foot_layout_is_body135s_first_25_points():
    """BODY_FOOT (paper Table 2's body-foot nets): 25 points, the 35 BODY_135 pairs among them, 95 channels;
    its targets are BODY_135's at the same channels, and its maps go back into the 439 channels."""
    import torch

    from src.targets import Targets

    assert (BODY_FOOT.num_keypoints, BODY_FOOT.num_pairs, BODY_FOOT.num_channels) == (25, 35, 95)
    assert BODY_FOOT.names == BODY_135.names[:25] and Layout.of("body_foot") is BODY_FOOT
    assert set(BODY_FOOT.pairs) <= set(BODY_135.pairs)  # BODY_135's pairs among the 25, in its order
    assert list(BODY_FOOT.pairs) == [p for p in BODY_135.pairs if max(p) < 25]
    assert list(BODY_FOOT.flip_index) == list(BODY_135.flip_index[:25])
    rng = np.random.default_rng(0)
    kp = np.zeros((2, 3, 135, 3), np.float32)
    kp[..., :2] = rng.uniform(4, 60, (2, 3, 135, 2))
    kp[..., 2] = rng.choice([0, 1, 2], (2, 3, 135))
    labelled = np.zeros((2, 135), bool)
    labelled[:, :25] = True
    labelled[1, 19:25] = False  # a COCO-17 + MPII-like sample
    full = Targets()(torch.from_numpy(kp), torch.from_numpy(labelled), None, (64, 64))
    sub = Targets(layout="body_foot")(torch.from_numpy(kp), torch.from_numpy(labelled), None, (64, 64))
    where = {pair: p for p, pair in enumerate(BODY_135.pairs)}  # BODY_FOOT's pairs are BODY_135's
    pafs = [135 + 2 * where[pair] + c for pair in BODY_FOOT.pairs for c in (0, 1)]
    channels = torch.as_tensor([*range(25), *pafs])
    for a, b in zip(full, sub, strict=True):
        assert b.shape == (2, 95, 8, 8) and torch.allclose(a[:, channels], b, atol=1e-6)


# -- a layout is data ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("layout", [BODY_135, BODY_FOOT], ids=lambda lay: lay.name)
def test_builtin_layouts_round_trip_through_yaml(layout, tmp_path):
    path = tmp_path / "layout.yaml"
    layout.save(path)
    back = Layout.load(path)
    assert back == layout and back is not layout and back.digest == layout.digest
    assert back.flip_channels[0].tolist() == layout.flip_channels[0].tolist()
    assert back.parts == layout.parts and back.groups == layout.groups


def test_a_changed_layout_is_not_equal():
    data = BODY_FOOT.to_dict()
    data["sigmas"] = [s + 1 for s in data["sigmas"]]
    assert Layout.from_dict(data) != BODY_FOOT and Layout.from_dict(data).digest != BODY_FOOT.digest


def test_a_small_layout_takes_its_defaults():
    lay = Layout.from_dict({"name": "tri", "keypoints": ["a", "b", "c"], "pairs": [["a", "b"], ["b", "c"]],
                            "sigmas": [7.0] * 3})
    assert lay.groups == {"keypoints": range(3)} and lay.parts == {"keypoints": (0, 1, 2)}
    assert lay.limbs == {"keypoints": (("a", "b"), ("b", "c"))} and lay.num_channels == 3 + 4


@pytest.mark.parametrize("data, message", [
    ({"keypoints": ["a", "b"], "pairs": [["a", "b"]], "sigmas": [1, 1]}, "'name' is missing"),
    ({"name": "x", "keypoints": ["a", "b"], "pairs": [["a", "z"]], "sigmas": [1, 1]}, "pairs names 'z'"),
    ({"name": "x", "keypoints": ["a", "b"], "pairs": [["a", "b"]], "sigmas": [1, 1], "colour": 1},
     "unknown key(s) ['colour']"),
    ({"name": "x", "keypoints": ["a", "b"], "pairs": [["a", "b"]], "sigmas": [1, 1], "oks_sigmas": [1]},
     "oks_sigmas has 1 values for 2 keypoints"),
])
def test_a_bad_layout_is_refused_by_key(data, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        Layout.from_dict(data)


def test_a_missing_layout_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="no file at"):
        Layout.of(str(tmp_path / "nope.yaml"))


@pytest.mark.parametrize("name, layout", [("body135", BODY_135), ("body_foot", BODY_FOOT)])
def test_the_layout_files_hold_the_builtin_layouts(name, layout):
    """conf/layout/*.yaml (what a run's `layout=` reads) are the built-in objects, as data."""
    from src.core.skeleton import LAYOUT_DIR

    assert Layout.load(LAYOUT_DIR / f"{name}.yaml") == layout


def test_a_layout_is_found_by_name_in_the_layout_folder(tmp_path, monkeypatch):
    import src.core.skeleton as skeleton

    lay = Layout.from_dict({"name": "tri", "keypoints": ["a", "b", "c"], "pairs": [["a", "b"], ["b", "c"]],
                            "sigmas": [7.0] * 3})
    lay.save(tmp_path / "tri.yaml")
    monkeypatch.setattr(skeleton, "LAYOUT_DIR", tmp_path)
    assert Layout.of("tri") == lay and Layout.of(str(tmp_path / "tri.yaml")) == lay
