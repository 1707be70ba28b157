"""src.decoder on maps rendered by the real src.targets: crowded synthetic scenes recovered person by person,
the peak search against a dense 3x3 maximum, the spec §7 rules on hand-made maps, bad input, the writers."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from src.core.skeleton import BODY_135
from src.decoder import decode as decode_module
from src.decoder.connections import Connections, score_connections
from src.decoder.decode import Decoder, Person, decode, to_image_pixels
from src.decoder.peaks import Peaks, find_peaks
from src.decoder.writers import openpose_json, records, write_openpose_json
from src.targets import Targets

ALL = torch.ones(1, 135, dtype=torch.bool)
SIZE = (384, 512)


# -- a random plausible person: a template posed by random joint angles ------------------------------------
def _face(centre: np.ndarray, r: float) -> np.ndarray:
    """The 70 face points (iBUG order + pupils) of a face of half-width ``r``."""
    pts = [(-math.cos(math.pi * i / 16), 0.1 + 0.9 * math.sin(math.pi * i / 16)) for i in range(17)]
    pts += [(-0.8 + 0.15 * i, -0.55) for i in range(5)] + [(0.2 + 0.15 * i, -0.55) for i in range(5)]
    pts += [(0.0, -0.35 + 0.13 * i) for i in range(4)] + [(-0.25 + 0.125 * i, 0.2) for i in range(5)]
    for cx in (-0.45, 0.45):
        eye = np.linspace(0, 2 * math.pi, 7)[:6]
        pts += [(cx + 0.2 * math.cos(a), -0.3 + 0.08 * math.sin(a)) for a in eye]
    pts += [(0.4 * math.cos(a), 0.5 + 0.15 * math.sin(a)) for a in np.linspace(0, 2 * math.pi, 13)[:12]]
    pts += [(0.25 * math.cos(a), 0.5 + 0.06 * math.sin(a)) for a in np.linspace(0, 2 * math.pi, 9)[:8]]
    pts += [(-0.45, -0.3), (0.45, -0.3)]
    return centre + r * np.array(pts)


def _rotate(pts: np.ndarray, about: np.ndarray, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return (pts - about) @ np.array([[c, s], [-s, c]]) + about


def random_person(rng: np.random.Generator, height: float, centre: tuple[float, float]) -> np.ndarray:
    """``[135, 3]`` (x, y, code 1): a standing figure ``height`` px tall with randomly bent limbs."""
    p = np.zeros((135, 2))
    body = {0: (0, .07), 1: (.025, .055), 2: (-.025, .055), 3: (.05, .065), 4: (-.05, .065), 5: (.11, .18),
            6: (-.11, .18), 7: (.14, .34), 8: (-.14, .34), 9: (.15, .48), 10: (-.15, .48), 11: (.08, .52),
            12: (-.08, .52), 13: (.09, .74), 14: (-.09, .74), 15: (.1, .95), 16: (-.1, .95), 17: (0, .15),
            18: (0, 0), 19: (.14, .99), 20: (.17, .98), 21: (.09, .97), 22: (-.14, .99), 23: (-.17, .98),
            24: (-.09, .97)}
    for k, v in body.items():
        p[k] = v
    for side, wrist, first in ((1, 9, 25), (-1, 10, 45)):          # five fingers fanning from the wrist
        for f in range(5):
            a = math.radians(-50 + 25 * f)
            d = np.array([side * math.sin(a), math.cos(a)])
            for j in range(4):
                p[first + 4 * f + j] = p[wrist] + d * (0.018 + 0.012 * j)
    p[65:135] = _face(np.array([0.0, 0.07]), 0.045)
    limbs = [(5, 7, [7, 9, *range(25, 45)]), (7, 9, [9, *range(25, 45)]), (6, 8, [8, 10, *range(45, 65)]),
             (8, 10, [10, *range(45, 65)]), (11, 13, [13, 15, 19, 20, 21]), (13, 15, [15, 19, 20, 21]),
             (12, 14, [14, 16, 22, 23, 24]), (14, 16, [16, 22, 23, 24])]
    for joint, _, moved in limbs:
        span = 0.9 if joint in (5, 6, 7, 8) else 0.35
        p[moved] = _rotate(p[moved], p[joint], rng.uniform(-span, span))
    p[:] = _rotate(p, p[12] * 0 + (p[11] + p[12]) / 2, rng.uniform(-0.25, 0.25))
    xy = (p - p.mean(0)) * height + np.asarray(centre)
    return np.concatenate([xy, np.ones((135, 1))], 1).astype(np.float32)


def crowd(seed: int, n: int = 12, size=SIZE) -> np.ndarray:
    """``n`` people in two overlapping rows: neighbours' boxes overlap, bodies stay distinguishable."""
    rng = np.random.default_rng(seed)
    h, w = size
    people = []
    for i in range(n):
        row, col = divmod(i, (n + 1) // 2)
        x = (col + 0.5) * w / ((n + 1) // 2) + rng.uniform(-8, 8)
        y = h * (0.3 + 0.42 * row) + rng.uniform(-8, 8)
        people.append(random_person(rng, rng.uniform(0.45, 0.55) * h, (x, y)))
    return np.stack(people)


def render(kp: np.ndarray, size=SIZE, stride: int = 8) -> torch.Tensor:
    maps, _ = Targets(stride=stride)(torch.from_numpy(kp)[None], ALL, None, size)
    return maps[0]


def match(drawn: np.ndarray, found: list[Person]) -> np.ndarray:
    """Distance of each drawn point to the same point of the decoded person drawn there (the one whose found
    points lie within 3 px of this person's, by median): ``[G, 135]``, inf where missing. Each decoded person
    must be one drawn person's."""
    out = np.full(drawn.shape[:2], np.inf)
    for p in found:
        ok = p.keypoints[:, 2] > 0
        dist = np.linalg.norm(p.keypoints[None, :, :2] - drawn[:, :, :2], axis=2)   # [G, 135]
        median = np.median(dist[:, ok], axis=1)
        owner = int(np.argmin(median))
        assert median[owner] < 3 and (np.sort(median)[1:2] > 3).all(), "a decoded person mixes people"
        out[owner] = np.where(ok, np.minimum(out[owner], dist[owner]), out[owner])
    return out


@pytest.fixture(scope="module")
def scene():
    kp = crowd(seed=3)
    maps = render(kp)
    decoder = Decoder()
    fine = decoder.resize(maps, SIZE)
    return kp, maps, fine, decoder


def test_crowded_scene_recovers_every_person(scene):
    """12 people in two overlapping rows: each found once, nearly every point on its own person, in place.
    (A few points are lost or swapped where two people's same limbs overlap: the averaged GT PAF is then
    ambiguous for any decoder.)"""
    kp, maps, fine, decoder = scene
    people = decoder.decode_resized(fine, maps[:135])
    assert len(people) == len(kp)
    dist = match(kp, people)                                     # also: no decoded person mixes two people
    inside = (kp[..., 0] >= 0) & (kp[..., 0] < SIZE[1]) & (kp[..., 1] >= 0) & (kp[..., 1] < SIZE[0])
    found = np.isfinite(dist) & inside
    assert found.sum() >= 0.99 * inside.sum()
    assert np.percentile(dist[found], 95) < 1.5
    assert (dist[found] >= 4).mean() < 0.01                      # points taken from a neighbour
    per_person = ((dist < 4) & inside).sum(1) / inside.sum(1)
    assert per_person.min() > 0.95
    for p in people:
        assert 0.8 < p.score <= 1.1
        assert set(p.part_scores) == {"body", "foot", "face", "lefthand", "righthand", "wholebody"}


def _dense_peaks(heat: torch.Tensor, threshold: float = 0.05) -> set:
    """Reference: every pixel above threshold, > its earlier and >= its later 3x3 neighbours (in-image)."""
    pad = torch.nn.functional.pad(heat, (1, 1, 1, 1), value=-float("inf"))
    h, w = heat.shape[1:]
    ok = heat > threshold
    for i, (dy, dx) in enumerate([(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]):
        if dy or dx:
            other = pad[:, 1 + dy:h + 1 + dy, 1 + dx:w + 1 + dx]
            ok &= heat > other if i < 4 else heat >= other
    return set(map(tuple, ok.nonzero().tolist()))


def test_peak_search_equals_dense_maximum(scene):
    """Every peak found is a dense maximum; of the dense maxima at a drawn point, at most 0.5% are missed (a
    weaker point within about a cell of a stronger one of the same part). Dense maxima off every drawn point
    are the edges of Gaussians cut by the border."""
    kp, maps, fine, _ = scene
    dense = _dense_peaks(fine[:135])
    drawn = {(p, y, x) for p, y, x in dense if np.hypot(kp[:, p, 0] - x, kp[:, p, 1] - y).min() < 3}
    peaks = find_peaks(fine[:135], radius=0, coarse=maps[:135])
    mine = set(zip(peaks.part.tolist(), np.rint(peaks.y).astype(int).tolist(),
                   np.rint(peaks.x).astype(int).tolist(), strict=True))
    assert mine <= dense
    assert len(drawn - mine) <= 0.005 * len(drawn)
    sampled = find_peaks(fine[:135], radius=0)                   # seeds sampled from the full map itself
    assert abs(len(sampled) - len(peaks)) <= 0.005 * len(peaks)


def test_decode_entry_point_hydra_config_and_scales(scene):
    kp, maps, _, _ = scene
    conf = str(__import__("pathlib").Path(__file__).parents[1] / "conf")
    with initialize_config_dir(config_dir=conf, version_base="1.3"):
        cfg = compose(config_name="oracle")
    decoder = instantiate(cfg.decoder)
    assert isinstance(decoder, Decoder) and decoder.peak_threshold == 0.05 and decoder.inter_min_above == 0.95
    one = decode(maps, SIZE, decoder)
    assert len(one) == len(kp)
    # Two scales: the same scene rendered at half size averages with the full one to the same people.
    half = render(kp * np.array([0.5, 0.5, 1], np.float32), (SIZE[0] // 2, SIZE[1] // 2))
    two = decode([maps, half], SIZE, decoder, scales=[1.0, 0.5])
    assert len(two) == len(kp)
    assert np.isfinite(match(kp, two)).sum() > 0.95 * np.isfinite(match(kp, one)).sum()


def test_resize_equals_torch_bicubic():
    maps = torch.rand(439, 9, 11)
    bicubic = lambda f: torch.nn.functional.interpolate(maps[None], scale_factor=f, mode="bicubic")[0]  # noqa: E731
    ref = bicubic(8.0)
    dec = Decoder()
    assert torch.allclose(dec.resize(maps, (72, 88)), ref, atol=1e-5)
    assert torch.allclose(dec.resize(maps, (70, 85)), ref[:, :70, :85], atol=1e-5)      # cropped
    padded = dec.resize(maps, (80, 96))
    assert torch.allclose(padded[:, :72, :88], ref, atol=1e-5) and not padded[:, 72:].any()
    assert torch.allclose(dec.resize(maps, (144, 176), scales=[0.5]), bicubic(16.0), atol=1e-5)


# -- spec §7 rules on small hand-made maps ------------------------------------------------------------------
def test_paf_rule_95_percent_and_close_pairs():
    h, w = 64, 96
    pafs = torch.zeros(304, h, w)
    pafs[2 * 6, 30:33, :] = 1.0                         # pair 6 (5 -> 7) points along +x on rows 30-32
    peaks = Peaks(np.array([5, 5, 7, 7]), np.array([10, 10, 70, 10.3], np.float32),
                  np.array([31, 10, 31, 10.2], np.float32), np.ones(4, np.float32))
    conns = score_connections(pafs, peaks, BODY_135)
    got = {(int(a), int(b)): float(s) for a, b, s in zip(conns.a, conns.b, conns.score, strict=True)}
    assert got[(0, 2)] == pytest.approx(1.0)            # along the field: accepted with its mean
    assert got[(1, 3)] == pytest.approx(0.05 + 1e-6)    # < sqrt(HW)/150 apart, no field: close-pair rule
    assert (0, 3) not in got and (1, 2) not in got      # across the field: rejected
    pafs[2 * 6, 31, 40] = -1.0                          # one of the 19 samples fails: > 95% no longer holds
    pafs[2 * 6, 30:33, 40] = -1.0
    conns = score_connections(pafs, peaks, BODY_135)
    assert (0, 2) not in {(int(a), int(b)) for a, b in zip(conns.a, conns.b, strict=True)}


def test_sub_pixel_refinement_and_border_peaks():
    heat = torch.zeros(135, 40, 50)
    yy, xx = torch.meshgrid(torch.arange(40.0), torch.arange(50.0), indexing="ij")
    heat[3] = torch.exp(-((xx - 20.3) ** 2 + (yy - 11.6) ** 2) / 2)     # sigma 1: the 7x7 centroid is exact
    heat[4] = torch.exp(-((xx - 0.0) ** 2 + (yy - 39.0) ** 2) / 8)     # on the corner pixel
    heat[5] = torch.exp(-((xx - 30.5) ** 2 + (yy - 20.0) ** 2) / 2)    # exactly between two pixels
    peaks = find_peaks(heat)
    assert peaks.part.tolist() == [3, 4, 5]
    assert peaks.x[0] == pytest.approx(20.3, abs=0.05) and peaks.y[0] == pytest.approx(11.6, abs=0.05)
    assert (peaks.x[1], peaks.y[1]) == pytest.approx((1.091, 37.909), abs=0.01)  # window cut by the corner
    assert peaks.x[2] == pytest.approx(30.5, abs=0.02) and peaks.score[2] == pytest.approx(math.exp(-1 / 8))


def test_filter_thresholds_and_fallback():
    kp = np.zeros((1, 135, 3), np.float32)
    kp[0, :, 2] = 2
    kp[0, [5, 7], :] = [[100, 100, 1], [100, 160, 1]]           # two points: below min_parts 3
    people = decode(render(kp, (256, 256)), (256, 256))
    assert len(people) == 1                                      # ... kept by the fallback (2 parts, 0.05)
    kp[0, 9] = [100, 220, 1]
    people = decode(render(kp, (256, 256)), (256, 256))
    assert len(people) == 1 and (people[0].keypoints[[5, 7, 9], 2] > 0.9).all()
    assert decode(render(kp, (256, 256)), (256, 256), Decoder(min_parts=4, fallback_min_parts=4)) == []
    kp[0, 9, 2] = 2
    assert decode(render(kp, (256, 256)), (256, 256), Decoder(fallback_min_parts=3)) == []


def test_face_fragments_join_their_person():
    """Without NoseLower2 (98) the mouth and nostrils link to nothing but each other: face-only fragments,
    merged back into the person whose face box holds them (§7.5 step 3)."""
    rng = np.random.default_rng(1)
    kp = np.stack([random_person(rng, 200, (90, 130)), random_person(rng, 200, (190, 130))])
    kp[:, 98, 2] = 2
    people = decode(render(kp, (288, 288)), (288, 288))
    assert len(people) == 2
    dist = match(kp, people)
    assert np.isfinite(dist[:, 113:133]).all() and np.isfinite(dist[:, [96, 97, 99, 100]]).all()
    assert np.isfinite(dist).sum() == 2 * 134 and (dist[np.isfinite(dist)] < 3).all()


def test_foot_rule_drops_legs_with_feet():
    """A person with feet and at most 4 other counted parts is dropped (§7.5 step 3) while anyone else
    survives; alone, it comes back through the fallback (feet counted)."""
    rng = np.random.default_rng(2)
    kp = np.stack([random_person(rng, 150, (80, 128)), random_person(rng, 150, (200, 128))])
    legs = [11, 13, 15, 19, 20, 21]
    kp[1, [i for i in range(135) if i not in legs], 2] = 2
    people = decode(render(kp, (256, 288)), (256, 288))
    assert len(people) == 1 and people[0].keypoints[0, 2] > 0
    alone = decode(render(kp[1:], (256, 288)), (256, 288))
    assert len(alone) == 1 and (alone[0].keypoints[legs, 2] > 0).all()


# -- bad input ----------------------------------------------------------------------------------------------
def test_nan_maps_count_as_zero(scene):
    kp, maps, _, _ = scene
    bad = maps.clone()
    bad[:, :5, :] = float("nan")
    bad[135:, 20:, :] = float("nan")                             # PAFs of the lower half unreadable
    people = decode(bad, SIZE)
    assert people and all(np.isfinite(p.keypoints).all() and math.isfinite(p.score) for p in people)
    assert decode(torch.full_like(maps, float("nan")), SIZE) == []


def test_all_zero_maps_give_nobody():
    assert decode(torch.zeros(439, 30, 40), (240, 320)) == []


def test_one_person_and_people_at_the_border():
    rng = np.random.default_rng(0)
    one = random_person(rng, 180, (128, 115))[None]
    people = decode(render(one, (256, 256)), (256, 256))
    assert len(people) == 1 and np.isfinite(match(one, people)).all()
    cut = random_person(rng, 200, (20, 110))[None]               # half outside the left border
    people = decode(render(cut, (256, 256)), (256, 256))
    inside = (cut[0, :, 0] >= 0) & (cut[0, :, 0] < 256) & (cut[0, :, 1] >= 0) & (cut[0, :, 1] < 256)
    assert len(people) == 1
    assert np.isfinite(match(cut, people))[0, inside].mean() > 0.9


def test_wrong_shapes_are_named():
    with pytest.raises(ValueError, match=r"\[439, h, w\]"):
        decode(torch.zeros(438, 10, 10), (80, 80))
    with pytest.raises(ValueError, match="2 maps but 1 scales"):
        decode([torch.zeros(439, 10, 10)] * 2, (80, 80), scales=[1.0])


def test_empty_peaks_and_connections():
    peaks = find_peaks(torch.zeros(135, 2, 2))
    assert len(peaks) == 0
    conns = score_connections(torch.zeros(304, 2, 2), peaks, BODY_135)
    assert isinstance(conns, Connections) and len(conns.k) == 0


# -- writers ------------------------------------------------------------------------------------------------
def test_writers(tmp_path, scene):
    kp, maps, fine, decoder = scene
    people = to_image_pixels(decoder.decode_resized(fine, maps[:135]), 2.0, (4.0, 0.0))
    person = people[0]
    recs = records(people, image_id=7)
    assert len(recs) == len(people)
    rec = recs[0]
    assert rec["image_id"] == 7 and rec["category_id"] == 1
    assert [len(rec[f]) for f in BODY_135.wholebody_parts] == [51, 18, 204, 63, 63]
    assert rec["score"] == pytest.approx(person.part_scores["body"], abs=1e-6)
    for part in ("foot", "face", "lefthand", "righthand", "wholebody"):
        assert rec[f"{part}_score"] == pytest.approx(person.part_scores[part], abs=1e-6)
    raw = decoder.decode_resized(fine, maps[:135])[0].keypoints
    assert rec["keypoints"][0] == pytest.approx((raw[0, 0] - 4) / 2, abs=1e-3)
    doc = openpose_json(people)
    assert doc["version"] == 1.3 and len(doc["people"]) == len(people)
    entry = doc["people"][0]
    assert entry["person_id"] == [-1] and len(entry["pose_keypoints_2d"]) == 405
    assert len(entry["face_keypoints_2d"]) == 210 and len(entry["hand_left_keypoints_2d"]) == 63
    assert entry["hand_left_keypoints_2d"][:3] == entry["pose_keypoints_2d"][27:30]        # left wrist (9)
    assert entry["hand_right_keypoints_2d"][3:6] == entry["pose_keypoints_2d"][135:138]    # RThumb1CMC (45)
    assert entry["face_keypoints_2d"][:3] == entry["pose_keypoints_2d"][195:198]           # face 0 (65)
    assert entry["pose_keypoints_3d"] == [] and entry["hand_right_keypoints_3d"] == []
    path = write_openpose_json(people, tmp_path / "x" / "img_keypoints.json")
    assert json.loads(path.read_text()) == doc


def test_part_without_points_is_zero_in_its_record():
    kp = np.zeros((135, 3), np.float32)
    kp[:17] = [10, 20, 0.9]
    person = Person(kp, 0.1, {"body": 0.5, "foot": 0.0, "face": 0.0, "lefthand": 0.0, "righthand": 0.0,
                              "wholebody": 0.1})
    rec = records([person], 1)[0]
    assert not any(rec["face_kpts"]) and not any(rec["foot_kpts"]) and not any(rec["lefthand_kpts"])
    kp[30] = [12, 30, 0.8]                                       # one left-hand point: the hand and its wrist
    rec = records([person], 1)[0]
    assert rec["lefthand_kpts"][:3] == pytest.approx([10, 20, 0.9]) and rec["lefthand_kpts"][20] == 0.8


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
@pytest.mark.parametrize("name", ["crowd10", "nan_holes", "two_scales"])
def test_lazy_cuda_equals_cpu(name):
    """The lazy reads run where the maps are: on the GPU only index arrays go there and values come back."""
    maps, size, scales = LAZY_SCENES[name]
    on_gpu = [m.cuda() for m in maps] if isinstance(maps, list) else maps.cuda()
    late, late_gpu = Decoder().lazy(maps, size, scales), Decoder().lazy(on_gpu, size, scales)
    c, y, x = np.arange(439) % 439, np.arange(439) % size[0], (7 * np.arange(439)) % size[1]
    assert np.allclose(late.take(c, y, x), late_gpu.take(c, y, x), atol=1e-5)
    _same_people(decode(maps, size, scales=scales), decode(on_gpu, size, scales=scales), score_atol=1e-4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_cuda_equals_cpu(scene):
    kp, maps, _, _ = scene
    cpu = decode(maps, SIZE)
    gpu = decode(maps.cuda(), SIZE)
    assert len(gpu) == len(cpu)
    for a, b in zip(cpu, gpu, strict=True):
        assert np.allclose(a.keypoints, b.keypoints, atol=1e-2)
        assert a.score == pytest.approx(b.score, abs=1e-4)


# -- lazy resize (decoder.resize: lazy) against the full upsampling ---------------------------------------
def _lazy_scenes() -> dict:
    """name -> (maps or list of maps over scales, input size, scales)."""
    g = torch.Generator().manual_seed(5)
    crowd10, crowd32 = render(crowd(11, n=10)), render(crowd(12, n=32, size=(480, 640)), (480, 640))
    holes = render(crowd(13, n=12)) + 0.05 * torch.randn(439, 48, 64, generator=g)
    holes[:, 10:14, 20:30] = float("nan")
    holes[140:160, 30:, :] = float("nan")
    holes[3, 0, 0] = float("inf")
    blurred = torch.nn.functional.avg_pool2d(render(crowd(14, n=16))[None], 3, 1, 1)[0]
    kp = crowd(15, n=12)
    half = render(kp * np.array([0.5, 0.5, 1], np.float32), (SIZE[0] // 2, SIZE[1] // 2))
    noise = torch.rand(439, 30, 40, generator=g)                      # hundreds of thousands of candidates
    return {"crowd10": (crowd10, SIZE, None), "crowd32": (crowd32, (480, 640), None),
            "nan_holes": (holes, SIZE, None), "blurred": (blurred, SIZE, None),
            "two_scales": ([render(kp), half], SIZE, [1.0, 0.5]), "noise": (noise, (240, 320), None),
            "empty": (torch.zeros(439, 48, 64), SIZE, None)}


LAZY_SCENES = _lazy_scenes()


def _same_people(people: list[Person], others: list[Person], score_atol: float) -> None:
    assert len(people) == len(others)
    for p, q in zip(people, others, strict=True):
        assert ((p.keypoints[:, 2] > 0) == (q.keypoints[:, 2] > 0)).all()
        assert np.abs(p.keypoints[:, :2] - q.keypoints[:, :2]).max() < 1e-3
        assert np.abs(p.keypoints[:, 2] - q.keypoints[:, 2]).max() < 1e-5
        for part in p.part_scores:                                   # wholebody is the person score
            assert p.part_scores[part] == pytest.approx(q.part_scores[part], abs=score_atol), part


@pytest.mark.parametrize("name", list(LAZY_SCENES))
def test_lazy_equals_full(name, monkeypatch):
    """The lazy reads equal the full maps to float rounding (the products are summed in another order than
    the matrix products), and so do peaks, connections and people. One thing is not bit-stable: a centroid
    a float32 ulp (3e-5 px at x = 500) away moves a PAF sample at ``A + t (B - A)`` that lies on a half-pixel
    to the next pixel; that changes one connection's score by ~1e-3 (crowd32: a face part score by 1.1e-5;
    noise: a person score by 1.02e-5). So people are compared twice: from the same peaks, keypoints to 1e-3 px
    and every score to 1e-5; end to end, the same but scores to 1e-4."""
    maps, size, scales = LAZY_SCENES[name]
    full, lazy = Decoder(resize="full"), Decoder(resize="lazy")
    fine, late = full.resize(maps, size, scales), lazy.lazy(maps, size, scales)
    # the values read: every pixel of a few channels, and the maps at the stride (the multi-scale seeds)
    for c in (0, 70, 200, 438):
        everywhere = late.take(np.full(size, c), *np.indices(size))
        assert np.allclose(everywhere, torch.nan_to_num(fine[c]).numpy(), atol=2e-6, rtol=0)
    assert torch.allclose(late[:135].sampled(8), fine[:135, 4::8, 4::8], atol=2e-6)
    coarse = None if isinstance(maps, list) else maps[:135]
    a, b = find_peaks(fine[:135], coarse=coarse), find_peaks(late[:135], coarse=coarse)
    # Peaks are listed by descending score within a part; equal scores (1e-7 apart, in the noise scene) may
    # be listed in the other order, so they are compared by position.
    oa, ob = np.lexsort((a.y, a.x, a.part)), np.lexsort((b.y, b.x, b.part))
    assert a.part[oa].tolist() == b.part[ob].tolist()
    assert np.abs(a.x[oa] - b.x[ob]).max(initial=0) < 1e-3 and np.abs(a.y[oa] - b.y[ob]).max(initial=0) < 1e-3
    assert np.abs(a.score[oa] - b.score[ob]).max(initial=0) < 1e-5
    ca = score_connections(fine[135:], a, BODY_135)   # the same peaks
    cb = score_connections(late[135:], a, BODY_135)
    pairs = lambda c: sorted(zip(c.a.tolist(), c.b.tolist(), strict=True))  # noqa: E731
    assert pairs(ca) == pairs(cb)
    assert np.abs(np.sort(ca.score) - np.sort(cb.score)).max(initial=0) < 1e-5
    lazy_people = lazy(maps, size, scales)
    _same_people(full(maps, size, scales), lazy_people, score_atol=1e-4)
    monkeypatch.setattr(decode_module, "find_peaks", lambda *args, **kwargs: b)   # the lazy path's peaks
    _same_people(full.decode_resized(fine, coarse), lazy_people, score_atol=1e-5)


@pytest.mark.parametrize("name", ["crowd10", "nan_holes", "two_scales", "noise"])
def test_pair_bound_is_above_every_value(name):
    """``LazyMaps.pair_bound`` never under-states ``max(|PAF_x|, |PAF_y|)``, at every pixel of a pair's
    channels, with NaN/inf holes (no bound there) and over two scales."""
    maps, size, scales = LAZY_SCENES[name]
    pafs = Decoder().lazy(maps, size, scales)[135:]
    yx = np.indices(size).reshape(2, -1)
    for pair in (0, 5, 77, 151):
        bound = pafs.pair_bound(np.full(yx.shape[1], pair), *yx)
        values = np.abs(pafs.take(np.array([[2 * pair, 2 * pair + 1]]).repeat(yx.shape[1], 0),
                                  yx[0][:, None], yx[1][:, None])).max(1)
        assert (bound >= values - 1e-6).all()
    if name == "nan_holes":                                             # PAF channels 140-159 hold NaN rows
        assert np.isinf(pafs.pair_bound(np.array([3]), np.array([size[0] - 1]), np.array([0]))).all()


def test_pair_bound_settles_most_candidates_without_reading(monkeypatch):
    """On the 10-person scene most of the ~15 000 candidates join two people across empty PAF: the bound
    rejects them, and the PAF values read are under half of what the probes alone read (43% here)."""
    from src.decoder.maps import LazyMaps

    maps, size, _ = LAZY_SCENES["crowd10"]
    late = Decoder().lazy(maps, size)
    peaks = find_peaks(late[:135], coarse=maps[:135])
    counted = []
    grid = LazyMaps._grid
    monkeypatch.setattr(LazyMaps, "_grid", lambda self, c, ys, xs: counted.append(len(c)) or grid(self, c, ys,
                                                                                                 xs))
    with_bound = score_connections(late[135:], peaks, BODY_135)
    reads = sum(counted)
    counted.clear()
    monkeypatch.setattr(LazyMaps, "pair_bound", lambda *args: None)
    without = score_connections(late[135:], peaks, BODY_135)
    assert (with_bound.a == without.a).all() and (with_bound.b == without.b).all()
    assert np.array_equal(with_bound.score, without.score)
    assert reads < sum(counted) / 2
