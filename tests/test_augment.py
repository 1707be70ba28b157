"""Augmentation geometry, checked numerically: the affine, where painted points land, the left/right flip,
points leaving the crop, the ignore mask and padding, centre swapping, eval resizing."""

import math

import cv2
import numpy as np
import pytest
from shard_helpers import person

from datamodules.augment import (
    SCALE_RANGES,
    Augment,
    Policy,
    background_canvas,
    background_patch,
    covers,
    crop_matrix,
    eval_sample,
)
from src.core.skeleton import BODY_135


def _meta(people, groups=("body",)):
    return {"groups": list(groups), "people": people}


def _paint(image, xy, colour, r=2):
    x, y = (int(round(v)) for v in xy)
    image[y - r:y + r + 1, x - r:x + r + 1] = colour


def _blob_centre(image, colour):
    ys, xs = np.nonzero(np.abs(image.astype(int) - colour).sum(-1) < 60)
    return np.array([xs.mean(), ys.mean()])


def test_crop_matrix_maps_centre_height_and_angle():
    size, m, angle, offset = 480, 1.25, 30.0, (7.0, -5.0)
    mat = crop_matrix((300.0, 200.0), 400.0, m, angle, offset, False, size)
    centre = mat @ [300.0, 200.0, 1.0]
    assert np.allclose(centre, [(size - 1) / 2 - 7.0, (size - 1) / 2 + 5.0])
    top = mat @ [300.0, 0.0, 1.0]  # 200 px above the centre
    assert np.isclose(np.linalg.norm(top - centre), 288 * m * 200 / 400)
    v = top - centre  # straight up, rotated 30 degrees counter-clockwise on screen -> leans left
    assert np.isclose(math.degrees(math.atan2(-v[0], -v[1])), angle)
    flipped = crop_matrix((300.0, 200.0), 400.0, m, angle, offset, True, size) @ [300.0, 200.0, 1.0]
    assert np.allclose(flipped, [size - 1 - centre[0], centre[1]])


def test_painted_point_lands_where_the_affine_says():
    rng = np.random.default_rng(0)
    image = np.full((300, 400, 3), 90, np.uint8)
    pts = {0: (200.0, 100.0), 9: (150.0, 180.0), 10: (260.0, 200.0)}
    colours = {0: (0, 0, 255), 9: (0, 255, 0), 10: (255, 0, 0)}
    for k, c in colours.items():
        _paint(image, pts[k], c)
    meta = _meta([person((200, 150), 200, ("body",), rng, points=pts)])
    aug = Augment(Policy("body", (0.8, 1.2), flip=0.0), size=160)
    for seed in range(5):
        aug.seed(seed)
        out = aug(image, meta)
        mat = out["matrix"]
        for k, c in colours.items():
            expect = mat @ [*pts[k], 1.0]
            assert np.allclose(out["keypoints"][0, k, :2], expect, atol=1e-3)
            if out["keypoints"][0, k, 2] == 1:
                assert np.allclose(_blob_centre(out["image"], c), expect, atol=1.0)


def test_flip_puts_the_left_hand_in_the_left_hand_channels():
    """A mirrored image shows the person's right hand where a left hand would be: after the flip the
    left-hand channels (25-44) must hold the points painted as the right hand, and vice versa."""
    rng = np.random.default_rng(1)
    image = np.full((240, 240, 3), 90, np.uint8)
    pts = {9: (60.0, 120.0), 25: (50.0, 110.0), 10: (180.0, 120.0), 45: (190.0, 110.0), 5: (100, 60),
           6: (140, 60)}
    for k, c in [(25, (0, 0, 255)), (45, (0, 255, 0))]:
        _paint(image, pts[k], c)
    groups = ("body", "lhand", "rhand")
    meta = _meta([person((120, 120), 200, groups, rng, points=pts)], groups)
    aug = Augment(Policy("hand", (1.0, 1.0), rotate=0.0, flip=1.0), size=240)
    aug.seed(0)
    out = aug(image, meta)
    assert out["flip"]
    kp = out["keypoints"][0]
    assert np.allclose(kp[25, :2], _blob_centre(out["image"], (0, 255, 0)), atol=1.0)  # was the right hand
    assert np.allclose(kp[45, :2], _blob_centre(out["image"], (0, 0, 255)), atol=1.0)
    assert kp[25, 0] < kp[45, 0]  # the left hand channel is now on the image's left side, as unflipped
    assert kp[5, 0] < kp[6, 0] and (kp[[9, 10, 25, 45], 2] == 1).all()


def test_flip_mirrors_the_groups_and_codes():
    meta = _meta([person((100, 100), 120, ("lhand",), np.random.default_rng(2))], ("lhand",))
    aug = Augment(Policy("hand", (1.0, 1.0), flip=1.0), size=160)
    aug.seed(0)
    out = aug(np.zeros((200, 200, 3), np.uint8), meta)
    kp = out["keypoints"][0]
    assert out["groups"] == ["rhand"]
    groups = BODY_135.groups
    assert (kp[list(groups["lhand"]), 2] == 4).all() and (kp[list(groups["rhand"]), 2] <= 2).all()
    assert kp[10, 2] <= 2 and kp[9, 2] == 4  # the labelled wrist moved with its hand


def test_points_leaving_the_crop_become_code_2_and_keep_their_index():
    pts = {0: (100.0, 100.0), 9: (10.0, 10.0), 10: (190.0, 190.0)}
    meta = _meta([person((100, 100), 40, ("body",), points=pts)])
    aug = Augment(Policy("body", (1.0, 1.0), rotate=0.0, flip=0.0), size=64)
    aug.seed(0)
    out = aug(np.zeros((200, 200, 3), np.uint8), meta)
    kp = out["keypoints"][0]
    assert kp[0, 2] == 1 and kp[9, 2] == 2 and kp[10, 2] == 2
    assert kp[9, 0] < 0 and kp[10, 0] > 63  # still where the affine put them
    assert (kp[20:, 2] == 4).all()


@pytest.mark.parametrize("limit", [10.0, 45.0])
def test_rotation_stays_within_data_rotate(limit):
    meta = _meta([person((100, 100), 100, points={0: (100.0, 100.0)})])
    aug = Augment(Policy.make("body", "intended", rotate=limit), size=64)
    aug.seed(0)
    angles = []
    for _ in range(200):
        mat = aug(np.zeros((200, 200, 3), np.uint8), meta)["matrix"]
        angles.append(math.degrees(math.atan2(mat[1, 0], mat[1, 1])))  # row 1: a flip negates row 0
    angles = np.abs(angles)
    assert angles.max() <= limit + 1e-3 and angles.max() > 0.9 * limit


def test_ignore_mask_is_warped_and_padding_depends_on_background():
    image = np.full((200, 200, 3), 200, np.uint8)
    ignore = np.zeros((200, 200), np.uint8)
    ignore[:, :100] = 255  # the left half is ignored
    meta = _meta([person((100, 100), 100, points={0: (100.0, 100.0)})])
    aug = Augment(Policy("body", (100 / 96, 100 / 96), rotate=0.0, flip=0.0), size=160)  # scale 1
    aug.seed(3)
    out = aug(image, meta, ignore)
    mat = out["matrix"]
    # image x = 100 (the mask edge) lands at crop x = mat[0, 0] * 100 + mat[0, 2]; cells left of it ignored
    edge = (mat[0, 0] * 100 + mat[0, 2]) / 8
    cols = out["ignore"].mean(0)
    assert cols[: int(edge) - 1].min() > 0.99 and cols[int(edge) + 1:].max() < 0.01
    # at m = 0.3 the person (100 px) becomes 0.6 * 160 * 0.3 = 28.8 px and the 200 px image 58 px: padding
    small = Augment(Policy("body", (0.3, 0.3), rotate=0.0, flip=0.0), size=160)
    small.seed(0)
    padded = small(image, meta)
    assert padded["ignore"][0, 0] == 1.0 and (padded["image"][0, 0] == 0).all()
    bg = np.full((160, 160, 3), 40, np.uint8)
    drawn = []
    pasted = small(image, meta, None, lambda: drawn.append(1) or bg)
    assert pasted["ignore"].max() == 0.0 and (pasted["image"][0, 0] == 40).all()
    assert (pasted["image"][80, 80] == 200).all() and drawn == [1]
    # a crop inside the image has no padding: no background is drawn (decoding one costs as much as the image)
    inside = Augment(Policy("body", (1.5, 1.5), rotate=0.0, flip=0.0), size=160)
    inside.seed(0)
    covered = inside(image, meta, None, lambda: drawn.append(1) or bg)
    assert drawn == [1] and (covered["image"] == 200).all() and covered["ignore"].max() == 0.0
    assert covers(covered["matrix"], 200, 200, 160) and not covers(pasted["matrix"], 200, 200, 160)


def test_hand_policy_centres_on_a_wrist_when_zoomed():
    """m = 3 > 2: with probability 0.95 the crop centres on the visible wrist (spec §4.3 step 2)."""
    pts = {9: (40.0, 160.0), 0: (100.0, 40.0)}
    meta = _meta([person((100, 100), 150, ("body",), points=pts)])
    aug = Augment(Policy("hand", (3.0, 3.0), rotate=0.0, flip=0.0), size=160)
    aug.seed(0)
    near = [np.abs(aug(np.zeros((200, 200, 3), np.uint8), meta)["keypoints"][0, 9, :2] - 79.5).max() <= 14
            for _ in range(40)]
    assert sum(near) >= 34
    body = Augment(Policy("body", (3.0, 3.0), rotate=0.0, flip=0.0), size=160)
    body.seed(0)
    assert not any(np.abs(body(np.zeros((200, 200, 3), np.uint8), meta)["keypoints"][0, 9, :2] - 79.5).max()
                   <= 14 for _ in range(10))


def test_image_policy_keeps_the_val_view_scale_and_flip_follows_the_policy():
    """Policy ``image`` (memorising a val set): m = 1 puts the image's height at the crop size whatever the
    people's heights, the crop centred on one of them; ``flip`` is the policy's probability."""
    h, size = 400, 200
    meta = _meta([person((150, 200), 60, points={0: (150.0, 180.0), 9: (150.0, 230.0)}),
                  person((450, 200), 300, points={0: (450.0, 100.0), 9: (450.0, 300.0)})])
    for flip, mirrored in ((0.0, False), (1.0, True)):
        aug = Augment(Policy("image", (1.0, 1.0), rotate=0.0, flip=flip), size=size)
        aug.seed(0)
        for _ in range(6):
            out = aug(np.zeros((h, 600, 3), np.uint8), meta)
            assert np.allclose(np.abs(out["matrix"][:, :2]), np.eye(2) * size / h, atol=1e-6)  # scale 1/2
            assert out["flip"] is mirrored
    assert Policy.make("image", "paper", flip=0.0).scale == (0.9, 1.1)
    assert Policy.make("image", "paper", flip=0.0).flip == 0.0


def test_policies_and_scale_ranges():
    assert Policy.make("hand", "released").scale == SCALE_RANGES["released"]["hand"] == (1 / 3, 1.5)
    assert Policy.make("hand", "intended").scale == (0.5, 4.0)
    assert Policy.make("mpii").scale == (1 / 3, 2.5)
    with pytest.raises(ValueError, match="unknown augmentation policy 'feet'"):
        Policy.make("feet")
    paper = {n: Policy.make(n, "paper").scale for n in ("body", "mpii", "face", "hand", "wholebody")}
    assert paper == {"body": (1 / 3, 1.5), "mpii": (1 / 3, 1.5), "face": (1 / 3, 1.5), "hand": (0.5, 4.0),
                     "wholebody": (2 / 3, 4.5)}   # spec §11.1: others 1/3-1.5, MPII hand 0.5-4, Dome 2/3-4.5
    with pytest.raises(ValueError, match="scale_ranges"):
        Policy.make("body", "effective")


def test_background_canvas_and_patch():
    import random
    rng = random.Random(0)
    big = background_canvas(np.zeros((300, 500, 3), np.uint8), 128)
    assert big.shape == (128, 213, 3)  # shorter side to the crop, then cropped
    assert background_canvas(np.zeros((50, 70, 3), np.uint8), 128).shape == (128, 128, 3)  # resized
    ramp = np.repeat(np.arange(213, dtype=np.uint8)[None, :, None], 128, 0).repeat(3, 2)
    patches = [background_patch(ramp, 128, rng) for _ in range(20)]
    assert all(p.shape == (128, 128, 3) for p in patches)
    assert any(p[0, 0, 0] > p[0, -1, 0] for p in patches) and any(p[0, 0, 0] < p[0, -1, 0] for p in patches)


def test_eval_sample_maps_back():
    pts = {0: (123.0, 45.0)}
    meta = _meta([person((100, 100), 100, points=pts)])
    out = eval_sample(np.zeros((300, 455, 3), np.uint8), meta, None, 128, "height")
    assert out["image"].shape[0] % 8 == 0 and out["image"].shape[1] % 8 == 0
    assert tuple(out["input_size"]) == (128, 194) and out["image"].shape[:2] == (128, 200)
    x, y = out["keypoints"][0, 0, :2]
    back = (np.array([x, y]) - out["offset"]) / out["scale"]
    assert np.allclose(back, pts[0], atol=1e-4)
    assert np.allclose(out["ignore"][:, -1], 6 / 8, atol=0.01)  # 6 of the last cell's 8 columns are padding
    assert out["ignore"][:, :-1].max() == 0.0


def test_seeded_and_photometric():
    rng = np.random.default_rng(4)
    image = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
    meta = _meta([person((80, 60), 100, ("body",), rng)])
    runs = []
    for photometric in (0.0, 0.0, 1.0):
        aug = Augment(Policy.make("body"), size=64, photometric=photometric)
        aug.seed(11)
        runs.append(aug(image, meta))
    assert np.array_equal(runs[0]["image"], runs[1]["image"])  # same seed, same crop
    assert np.array_equal(runs[0]["keypoints"], runs[2]["keypoints"])  # colour jitter moves no point
    assert not np.array_equal(runs[0]["image"], runs[2]["image"])


def test_ignore_fractions_match_a_full_resolution_warp():
    """The mask is warped at half resolution; the stride-8 fractions stay those of the full-size warp."""
    rng = np.random.default_rng(0)
    ignore = np.zeros((300, 400), np.uint8)
    for _ in range(6):
        centre = tuple(int(v) for v in rng.integers(0, 300, 2))
        cv2.circle(ignore, centre, int(rng.integers(10, 60)), 255, -1)
    meta = _meta([person((200, 150), 120, points={0: (200.0, 150.0)})])
    aug = Augment(Policy("body", (0.5, 2.0), rotate=30.0), size=160)
    aug.seed(1)
    for _ in range(8):
        out = aug(np.zeros((300, 400, 3), np.uint8), meta, ignore)
        full = cv2.warpAffine(ignore, out["matrix"].astype(np.float64), (160, 160), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=255)
        want = cv2.resize(full, (20, 20), interpolation=cv2.INTER_AREA) / 255.0
        diff = np.abs(out["ignore"] - want)
        assert want.std() > 0.1 and diff.mean() < 0.01 and diff.max() < 0.15


def test_non_finite_affine_is_a_bad_sample_and_nan_points_are_never_labelled():
    from datamodules.samples import BadSample
    from datamodules.streams import DATA_ERRORS

    image = np.full((120, 160, 3), 100, np.uint8)
    aug = Augment(Policy("body", (1.0, 1.0), flip=0.0), size=96)
    bad = person((80, 60), 80)
    bad["center"], bad["scale"] = [float("nan"), 60.0], float("nan")  # a NaN box reached the sample
    with pytest.raises(BadSample, match="affine is not finite") as err:
        aug(image, _meta([bad]))
    assert isinstance(err.value, DATA_ERRORS)  # the streams skip and count it
    ok = person((80, 60), 80)
    ok["keypoints"][0][:2] = [float("nan"), 30.0]  # labelled (v=1) but NaN
    out = aug(image, _meta([ok]))
    assert np.isfinite(out["keypoints"]).all() and out["keypoints"][0, 0, 2] == 2
