"""The synthetic world: determinism, labels per kind, evidence at every visible point, plausible skeletons."""

import json

import cv2
import numpy as np
import pytest

from sharding.synthetic import ALL_GROUPS, KINDS, image_id, iter_records, record, render
from sharding.synthetic_figure import _FINGER_SEGS, HAND_LEN, sample_pose
from src.core.skeleton import BODY_135

PEOPLE_KINDS = ["synth_body", "synth_face", "synth_hand", "synth_wholebody"]


def _kp(person: dict) -> np.ndarray:
    return np.array(person["keypoints"], np.float64)


def test_same_seed_same_bytes_other_index_other_image():
    a = record("synth_wholebody", "train", 7, seed=3)
    b = record("synth_wholebody", "train", 7, seed=3)
    assert a.image == b.image and a.meta == b.meta and a.key == b.key
    assert record("synth_wholebody", "train", 8, seed=3).image != a.image
    assert record("synth_wholebody", "train", 7, seed=4).image != a.image
    assert record("synth_wholebody", "val", 7, seed=3).image != a.image
    # any index regenerates alone: the stream's third record equals record(..., 2, ...)
    third = list(iter_records("synth_hand", "train", 3, seed=1))[2]
    assert third.image == record("synth_hand", "train", 2, seed=1).image


@pytest.mark.parametrize("kind", list(KINDS))
def test_groups_codes_and_meta(kind):
    ids = set()
    n_people = 0
    for rec in iter_records(kind, "train", 12, seed=0, size=256):
        meta = rec.meta
        assert json.loads(json.dumps(meta)) == meta
        assert meta["source"] == kind and meta["groups"] == KINDS[kind][1]
        assert (meta["width"], meta["height"]) == (256, 256) and rec.ext == "jpg"
        assert meta["file_name"] == f"{rec.key}.jpg" and meta["image_id"] not in ids
        ids.add(meta["image_id"])
        img = cv2.imdecode(np.frombuffer(rec.image, np.uint8), cv2.IMREAD_COLOR)
        assert img.shape == (256, 256, 3)
        labelled = BODY_135.labelled(meta["groups"])
        for p in meta["people"]:
            kp = _kp(p)
            assert kp.shape == (135, 3)
            assert set(np.unique(kp[labelled, 2])) <= {1, 2} and (kp[~labelled, 2] == 4).all()
            assert (kp[labelled, 2] == 1).any(), "a kept person shows at least one labelled point"
            assert (kp[kp[:, 2] >= 2, :2] == 0).all(), "unlabelled or hidden points have coordinates 0"
            vis = kp[kp[:, 2] == 1, :2]
            assert (vis >= 0).all() and (vis <= 255).all()
            x, y, w, h = p["bbox"]
            assert 0 <= x and 0 <= y and x + w <= 256 and y + h <= 256 and w > 0 and h > 0
            assert p["area"] == pytest.approx(0.53 * w * h, abs=0.01)
            assert p["center"] == [x + w / 2, y + h / 2] and p["scale"] >= 100
            assert ((vis >= [x - 1, y - 1]) & (vis <= [x + w + 1, y + h + 1])).all()
        n_people += len(meta["people"])
        if rec.ignore_png is not None:
            mask = cv2.imdecode(np.frombuffer(rec.ignore_png, np.uint8), cv2.IMREAD_UNCHANGED)
            assert mask.shape == (256, 256) and set(np.unique(mask)) <= {0, 255} and mask.max() == 255
    if kind == "synth_background":
        assert n_people == 0
    else:
        assert n_people >= 12


def test_close_ups_show_their_part_large():
    for i in range(8):
        face = render("synth_face", "train", i, seed=0)
        counts = [(_kp(p)[BODY_135.groups["face"], 2] == 1).sum() for p in face.people]
        assert max(counts) >= 40, f"face close-up {i} shows only {counts} face points"
        kp = _kp(face.people[int(np.argmax(counts))])
        assert np.ptp(kp[65:82][kp[65:82, 2] == 1, 1]) > 30, "the jaw spans tens of pixels"
        hand = render("synth_hand", "train", i, seed=0)
        hands = [*BODY_135.groups["lhand"], *BODY_135.groups["rhand"]]
        best = max((_kp(p)[hands, 2] == 1).sum() for p in hand.people)
        assert best >= 12, f"hand close-up {i} shows only {best} finger joints"


def test_val_is_fully_labelled():
    for kind in KINDS:
        for rec in iter_records(kind, "val", 4, seed=0):
            assert rec.meta["groups"] == ALL_GROUPS
            for p in rec.meta["people"]:
                assert set(np.unique(_kp(p)[:, 2])) <= {1, 2}


def test_image_ids_unique_across_kinds_and_splits():
    ids = {image_id(k, s, i) for k in KINDS for s in ("train", "val") for i in (0, 1, 4_999_999)}
    assert len(ids) == len(KINDS) * 2 * 3 and max(ids) < 2**31 // 20


@pytest.mark.parametrize("kind", PEOPLE_KINDS)
def test_every_visible_point_has_evidence(kind):
    """The drawing differs from the people-free background around each visible point (within the mark's
    footprint, which grows with the person's size)."""
    weak = []
    total = 0
    for i in range(10):
        scene = render(kind, "val", i, seed=5)
        diff = np.abs(scene.image.astype(np.int16) - scene.background.astype(np.int16)).max(2)
        for p in scene.people:
            r = 3 + int(0.015 * p["scale"])
            for k, (x, y, v) in enumerate(_kp(p)):
                if v != 1:
                    continue
                total += 1
                x, y = int(round(x)), int(round(y))
                if diff[max(0, y - r): y + r + 1, max(0, x - r): x + r + 1].max() < 30:
                    weak.append((i, k))
    assert total > 200 and not weak, f"{len(weak)} of {total} visible points without evidence: {weak[:5]}"


def test_occluded_points_are_not_labelled_visible():
    """Crowds hide some points (code 2 although inside the image); the people-free background shows where."""
    hidden = 0
    for i in range(15):
        scene = render("synth_body", "val", i, seed=2)
        for p, xy in zip(scene.people, scene.positions, strict=True):
            kp = _kp(p)
            inside = (xy >= 0).all(1) & (xy <= 255).all(1)
            hidden += int((inside & (kp[:, 2] == 2)).sum())
            assert (kp[kp[:, 2] == 1, :2] == np.round(xy[kp[:, 2] == 1], 2)).all()
    assert hidden > 20


def test_skeleton_geometry_is_plausible():
    rng = np.random.default_rng(0)
    for _ in range(200):
        kp, _shapes = sample_pose(rng)
        # facing the viewer: the person's left at +x for shoulders, hips, eyes, ears, pupils
        for left, right in ((5, 6), (11, 12), (1, 2), (3, 4), (134, 133)):
            assert kp[left, 0] > kp[right, 0]
        assert kp[18, 1] < kp[0, 1] < kp[17, 1] < kp[5, 1] < kp[11, 1], "crown, nose, neck, shoulder, hip"
        assert kp[[15, 16], 1].min() > kp[[13, 14], 1].max() - 0.1, "ankles below knees (standing)"
        for limb, length in (((5, 7), 0.15), ((7, 9), 0.135), ((11, 13), 0.215), ((13, 15), 0.205)):
            for s in (0, 1):
                d = np.linalg.norm(kp[limb[1] + s] - kp[limb[0] + s])
                assert 0.74 * length <= d <= 1.001 * length
        for hand, wrist in ((BODY_135.groups["lhand"], 9), (BODY_135.groups["rhand"], 10)):
            joints = kp[list(hand)].reshape(5, 4, 2)
            seg = np.linalg.norm(np.diff(joints, axis=1), axis=2) / HAND_LEN
            assert ((seg >= 0.6 * _FINGER_SEGS - 1e-9) & (seg <= _FINGER_SEGS + 1e-9)).all()
            base = np.linalg.norm(joints[:, 0] - kp[wrist], axis=1) / HAND_LEN
            assert ((base > 0.1) & (base < 0.5)).all(), "finger bases sit on the palm"
        # chirality: palms face the viewer with the thumb lateral, so the right hand mirrors the left
        cross = lambda a, b: a[0] * b[1] - a[1] * b[0]  # noqa: E731
        assert cross(kp[33] - kp[9], kp[25] - kp[9]) < 0 < cross(kp[53] - kp[10], kp[45] - kp[10])
        assert cross(kp[33] - kp[9], kp[29] - kp[41]) < 0 < cross(kp[53] - kp[10], kp[49] - kp[61])
        nose_to_eyes = np.linalg.norm(kp[0] - kp[[1, 2]], axis=1)
        assert (nose_to_eyes < 0.06).all() and np.allclose(kp[0], kp[65 + 30])


def test_image_left_right_follows_facing():
    """In the image the person's left lies on the same side of the spine for every person, any rotation:
    cross(RShoulder->LShoulder, hips->neck) < 0 with y down (the figures face the viewer)."""
    checked = 0
    for i in range(20):
        for p in render("synth_wholebody", "val", i, seed=1).people:
            kp = _kp(p)
            if (kp[[5, 6, 11, 12], 2] == 1).all():
                across = kp[5, :2] - kp[6, :2]
                up = (kp[5, :2] + kp[6, :2]) / 2 - (kp[11, :2] + kp[12, :2]) / 2
                assert across[0] * up[1] - across[1] * up[0] < 0
                checked += 1
    assert checked >= 15


@pytest.mark.parametrize(("args", "match"), [
    (("synth_people", "train", 1, 0), "unknown synthetic kind 'synth_people'"),
    (("synth_body", "test", 1, 0), "unknown split 'test'"),
    (("synth_body", "train", -1, 0), "count must be"),
    (("synth_body", "train", 1, -3), "seed must be >= 0"),
])
def test_bad_arguments_raise(args, match):
    with pytest.raises(ValueError, match=match):
        next(iter_records(*args))
    with pytest.raises(ValueError, match="image size"):
        record("synth_body", "train", 0, 0, size=32)
