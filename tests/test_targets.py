"""src.targets against the spec §3 rules: values at known cells, masks per policy, bad input, and equality
with the literal whole-grid reference (tests/dense_targets.py) on random crowded scenes."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from src.core.skeleton import BODY_135
from src.targets import Targets

sys.path.insert(0, str(Path(__file__).parent))
from dense_targets import dense_targets  # noqa: E402

ALL = torch.ones(135, dtype=torch.bool)
COCO23 = torch.from_numpy(BODY_135.labelled(["body", "foot"]))
HANDS = torch.from_numpy(BODY_135.labelled(["lhand", "rhand"]))
SMALL = 7 / 5.75


def centre(g: int) -> float:
    """Input pixel of grid cell g's centre at stride 8."""
    return 8 * g + 3.5


def people(n: int, value: float = 2.0) -> torch.Tensor:
    """[1, n, 135, 3] of unlabelled points (v=2 at 0, 0) to fill in."""
    kp = torch.zeros(1, n, 135, 3)
    kp[..., 2] = value
    return kp


def run(kp, labelled=ALL, size=(80, 96), ignore=None, **cfg):
    targets = Targets(**cfg)
    h, w = targets.grid_size(size)
    ignore = torch.zeros(len(kp), h, w) if ignore is None else ignore
    labelled = labelled.expand(len(kp), 135) if labelled.dim() == 1 else labelled
    return targets(kp, labelled, ignore, size)


def pair(a: int, b: int) -> int:
    return BODY_135.pairs.index((a, b))


def random_scene(gen: torch.Generator, nb: int, npeople: int, size: tuple[int, int]):
    """Compact people (some coinciding, some across the border), all visibility codes, mixed sources."""
    h, w = size
    centres = torch.rand(nb, npeople, 1, 2, generator=gen) * torch.tensor([w + 40.0, h + 40.0]) - 20
    spread = 4 + 30 * torch.rand(nb, npeople, 1, 1, generator=gen)
    xy = centres + spread * torch.randn(nb, npeople, 135, 2, generator=gen)
    xy[:, 1] = xy[:, 0] + torch.randn(nb, 135, 2, generator=gen)        # person 1 shadows person 0
    codes = torch.multinomial(torch.tensor([0.3, 0.4, 0.15, 0.1, 0.05]), nb * npeople * 135, replacement=True,
                              generator=gen).view(nb, npeople, 135).float()
    kp = torch.cat([xy, codes[..., None]], dim=-1)
    kp[:, -1, 40:60, :2] = kp[:, -1, 40:41, :2]                           # zero-length limbs
    sources = [ALL, COCO23, HANDS, torch.from_numpy(BODY_135.labelled(["face"])),
               torch.from_numpy(BODY_135.labelled(["mpii"]))]
    labelled = torch.stack([sources[i % len(sources)] for i in range(nb)])
    gh, gw = -(-h // 8), -(-w // 8)
    ignore = torch.rand(nb, gh, gw, generator=gen) * (torch.rand(nb, gh, gw, generator=gen) > 0.6)
    return kp, labelled, ignore


CONFIGS = [{}, {"mask_policy": "released"}, {"paf_centre": "released"},
           {"small_weight": 1.0, "paf_width": 1.5}, {"stride": 4}]


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()) or "dflt")
def test_equals_dense_reference_on_random_scenes(cfg):
    gen = torch.Generator().manual_seed(len(str(cfg)))
    size = (100, 130)                                                     # not a multiple of 8: 13 x 17 cells
    kp, labelled, ignore = random_scene(gen, 5, 4, size)
    if cfg.get("stride") == 4:
        ignore = torch.nn.functional.interpolate(ignore[:, None], size=(25, 33)).squeeze(1)
    target, weight = Targets(**cfg)(kp, labelled, ignore, size)
    ref_target, ref_weight = dense_targets(kp, labelled, ignore, size, **cfg)
    assert target.shape == (5, 439, *ignore.shape[1:])
    torch.testing.assert_close(target, ref_target, atol=1e-5, rtol=0)
    torch.testing.assert_close(weight, ref_weight, atol=1e-5, rtol=0)
    assert (target[:, :135] > 0).sum() > 500 and (target[:, 135:] != 0).sum() > 500   # the scene draws
    averaged = (target[:, 135:].view(5, 152, 2, -1).norm(dim=2) < 0.999) & (weight[:, 135::2] == 1).flatten(2)
    assert averaged.any()                                                 # some limbs of one type overlapped


def test_equals_dense_reference_in_a_crowd_of_45():
    """More people than one 40-person chunk of the plane bookkeeping, half of them with hidden parts."""
    gen = torch.Generator().manual_seed(45)
    kp, labelled, ignore = random_scene(gen, 2, 45, (64, 80))
    labelled[1] = COCO23                                                  # paper policy boxes on sample 1
    kp[:, ::2, 25:65, 2] = 3
    target, weight = Targets()(kp, labelled, ignore, (64, 80))
    ref_target, ref_weight = dense_targets(kp, labelled, ignore, (64, 80))
    torch.testing.assert_close(target, ref_target, atol=1e-5, rtol=0)
    torch.testing.assert_close(weight, ref_weight, atol=1e-5, rtol=0)


def test_gaussian_peak_spread_and_truncation():
    kp = people(1)
    kp[0, 0, 0] = torch.tensor([centre(5), centre(4), 1])                 # nose on a cell centre
    kp[0, 0, 70] = torch.tensor([centre(8), centre(6) + 2, 0])            # a face point, occluded
    target, weight = run(kp)
    nose, face = target[0, 0], target[0, 70]
    assert nose[4, 5] == 1 and nose.max() == 1
    assert nose[4, 6] == pytest.approx(math.exp(-64 / (2 * 49)))
    assert nose[4, 7] == pytest.approx(math.exp(-256 / (2 * 49)))        # 16 px: 7% > 1%
    assert nose[4, 8] == 0 and nose[7, 5] == 0                            # 24 px: below 1%, truncated
    assert face[6, 8] == pytest.approx(math.exp(-4 / (2 * 5.75**2)))
    assert face[6, 10] == pytest.approx(math.exp(-260 / (2 * 5.75**2)))   # 16.1 px < 5.75 * 3.03
    assert face[6, 11] == 0
    assert weight[0, 0].unique().tolist() == [1.0]
    assert weight[0, 70][face > 0].unique().tolist() == [pytest.approx(SMALL)]
    assert weight[0, 70][face == 0].unique().tolist() == [1.0]


def test_gaussians_merge_by_max_and_override_ignore():
    kp = people(2)
    kp[0, 0, 30] = torch.tensor([centre(3), centre(3), 1])
    kp[0, 1, 30] = torch.tensor([centre(4), centre(3), 1])
    ignore = torch.ones(1, 10, 12)
    target, weight = run(kp, ignore=ignore)
    assert target[0, 30, 3, 3] == 1 and target[0, 30, 3, 4] == 1        # max, not sum
    assert target[0, 30, 3, 2] == pytest.approx(math.exp(-64 / (2 * 5.75**2)))
    support = target[0, 30] > 0
    assert torch.allclose(weight[0, 30][support], torch.tensor(SMALL))   # spec: support overrides the mask
    assert weight[0, 30][~support].abs().sum() == 0 and weight[0, 31].abs().sum() == 0


@pytest.mark.parametrize("paf_centre, rows", [("aligned", [2, 3, 4]), ("released", [3])])
def test_paf_unit_vectors_one_cell_wide(paf_centre, rows):
    kp = people(1)
    kp[0, 0, 5] = torch.tensor([centre(2), centre(3), 1])                 # LShoulder -> LElbow, horizontal
    kp[0, 0, 7] = torch.tensor([centre(8), centre(3), 1])
    target, weight = run(kp, paf_centre=paf_centre)
    k = pair(5, 7)
    x, y = target[0, 135 + 2 * k], target[0, 136 + 2 * k]
    written = x != 0
    assert written.nonzero()[:, 0].unique().tolist() == rows             # released: one row, half-open box
    assert torch.all(x[written] == 1) and torch.all(y == 0) and torch.all(x[~written] == 0)
    assert torch.all(weight[0, 135 + 2 * k : 137 + 2 * k] == 1)           # written, or background
    if paf_centre == "aligned":
        assert written[3].nonzero().squeeze(1).tolist() == list(range(1, 10))   # box: ends +- 1 cell


def test_paf_overlaps_of_one_type_average():
    kp = people(2)
    kp[0, 0, [5, 7]] = torch.tensor([[centre(1), centre(4), 1], [centre(9), centre(4), 1]])   # across
    kp[0, 1, [5, 7]] = torch.tensor([[centre(5), centre(0), 1], [centre(5), centre(8), 1]])   # down
    target, _ = run(kp)
    k = pair(5, 7)
    assert target[0, 135 + 2 * k : 137 + 2 * k, 4, 5].tolist() == pytest.approx([0.5, 0.5])
    assert target[0, 135 + 2 * k, 4, 1] == 1 and target[0, 136 + 2 * k, 0, 5] == 1


def test_paf_needs_both_ends_labelled():
    kp = people(1)
    kp[0, 0, 5] = torch.tensor([centre(2), centre(3), 1])
    kp[0, 0, 7] = torch.tensor([centre(8), centre(3), 2])                 # elbow not labelled
    target, weight = run(kp)
    k = pair(5, 7)
    assert target[0, 135:].abs().sum() == 0
    assert target[0, 5].max() == 1 and target[0, 7].max() == 0
    assert torch.all(weight[0, 135 + 2 * k] == 1)                         # trained as background


def test_visibility_3_and_4_mask_their_channels_in_the_grown_person_box():
    kp = people(1)
    for k, (x, y) in {5: (40, 40), 6: (56, 40), 11: (40, 72), 12: (56, 72)}.items():
        kp[0, 0, k] = torch.tensor([x, y, 1.0])                           # box 16 x 32, forced >= 16 wide
    kp[0, 0, 25:45, 2] = 3                                                # left hand not annotated
    kp[0, 0, 7, 2] = 4                                                    # elbow "not in dataset"
    size = (160, 160)
    _, weight = run(kp, size=size)
    cells = torch.arange(20) * 8 + 3.5
    in_x = (cells >= 48 - 16 * 0.8) & (cells <= 48 + 16 * 0.8)            # half the side + 0.3 x the side
    in_y = (cells >= 56 - 32 * 0.8) & (cells <= 56 + 32 * 0.8)
    inside = in_y[:, None] & in_x[None, :]
    for c in [25, 44, 7, 135 + 2 * pair(9, 25), 136 + 2 * pair(5, 7), 135 + 2 * pair(7, 9)]:
        assert torch.all(weight[0, c][inside] == 0) and torch.all(weight[0, c][~inside] == 1), c
    assert torch.all(weight[0, 45] == 1) and torch.all(weight[0, 135 + 2 * pair(0, 1)] == 1)


def _coco_person():
    kp = people(1)
    kp[0, 0, :17, :2] = torch.tensor([100.0, 100.0]) + torch.rand(17, 2) * torch.tensor([20.0, 40.0])
    kp[0, 0, :17, 2] = 1
    kp[0, 0, 0, :2] = torch.tensor([100.0, 100.0])
    kp[0, 0, 16, :2] = torch.tensor([120.0, 140.0])                       # box 20 x 40 -> 3x box 60 x 120
    kp[0, 0, 17:, 2] = 4
    kp[0, 0, 19:25, 2] = 2                                                # feet: not labelled here
    return kp


@pytest.mark.parametrize("policy", ["paper", "released"])
def test_mask_policy_on_coco_like_samples(policy):
    size = (320, 320)
    _, weight = run(_coco_person(), labelled=COCO23, size=size, mask_policy=policy)
    cells = torch.arange(40) * 8 + 3.5
    in_x = (cells >= 110 - 30) & (cells <= 110 + 30)
    in_y = (cells >= 120 - 60) & (cells <= 120 + 60)
    in_box = in_y[:, None] & in_x[None, :]
    absent = [17, 18, 25, 64, 65, 134, 135 + 2 * pair(9, 25), 135 + 2 * pair(5, 17)]
    for c in absent:
        if policy == "paper":
            assert torch.all(weight[0, c][in_box] == 0) and torch.all(weight[0, c][~in_box] == 1), c
        else:
            assert torch.all(weight[0, c] == 0), c
    for c in [0, 19, 135 + 2 * pair(15, 19)]:                             # labelled: trained everywhere
        assert torch.all(weight[0, c] > 0)


@pytest.mark.parametrize("policy", ["paper", "released"])
def test_partial_sources_mask_missing_channels_everywhere(policy):
    kp = people(1, value=4)
    kp[0, 0, [9, 10, *BODY_135.groups["rhand"]], 2] = 2                   # labelled by the source, not here
    kp[0, 0, 25:45, :2] = 60 + torch.rand(20, 2) * 30
    kp[0, 0, 25:45, 2] = 1
    _, weight = run(kp, labelled=HANDS, mask_policy=policy)
    body = [k for k in BODY_135.groups["body"] if k not in (9, 10)]       # hand sources label the wrists
    assert weight[0, body].abs().sum() == 0 and weight[0, list(BODY_135.groups["face"])].abs().sum() == 0
    assert torch.all(weight[0, 9] == 1) and torch.all(weight[0, 45] == 1)
    assert weight[0, 135 + 2 * pair(0, 1)].abs().sum() == 0
    assert torch.all(weight[0, 135 + 2 * pair(9, 25)] > 0)


def test_images_with_nobody():
    empty_batch = run(torch.zeros(0, 3, 135, 3), labelled=torch.ones(0, 135, dtype=torch.bool))
    assert [tuple(x.shape) for x in empty_batch] == [(0, 439, 10, 12)] * 2
    kp = torch.zeros(2, 0, 135, 3)
    labelled = torch.stack([ALL, COCO23])
    for policy in ("paper", "released"):
        target, weight = run(kp, labelled=labelled, mask_policy=policy)
        assert target.abs().sum() == 0 and torch.all(weight[0] == 1)
        assert torch.all(weight[1, :17] == 1)
        assert torch.all(weight[1, 65] == (1 if policy == "paper" else 0))


def clean_and_as_dense(kp, labelled=ALL, size=(80, 96)):
    """Run both implementations; no NaN/inf anywhere, PAFs unit length at most, and the two agree."""
    target, weight = run(kp, labelled=labelled, size=size)
    assert torch.isfinite(target).all() and torch.isfinite(weight).all()
    assert target[:, 135:].view(len(kp), 152, 2, -1).norm(dim=2).max() <= 1 + 1e-6
    ignore = torch.zeros(len(kp), *target.shape[-2:])
    ref_target, ref_weight = dense_targets(kp, labelled.expand(len(kp), 135), ignore, size)
    torch.testing.assert_close(target, ref_target, atol=1e-5, rtol=0)
    torch.testing.assert_close(weight, ref_weight, atol=1e-5, rtol=0)
    return target, weight


def test_keypoints_outside_the_image():
    kp = people(1, value=1)
    kp[0, 0, :, :2] = torch.rand(135, 2) * 4000 - 2000                    # mostly far outside
    kp[0, 0, 0, :2] = torch.tensor([1e30, -1e30])                         # absurdly far: not drawn
    kp[0, 0, 5, :2] = torch.tensor([-10.0, 30.0])                         # just left of the image
    kp[0, 0, 7, :2] = torch.tensor([120.0, 30.0])                         # just right: the limb crosses it
    target, _ = clean_and_as_dense(kp)
    assert 0 < target[0, 5].max() < 1                                     # a Gaussian's tail reaches in
    k = pair(5, 7)
    assert (target[0, 135 + 2 * k] > 0.99).sum() >= 12                    # the crossing limb is drawn
    assert target[0, 0].abs().sum() == 0


def test_people_with_nothing_visible():
    kp = people(3)                                                        # v=2 at (0, 0): padding rows
    kp[0, 1, :, 2] = 3                                                    # nothing labelled, all "hidden"
    kp[0, 2, :, 2] = 4
    target, weight = clean_and_as_dense(kp, labelled=COCO23)
    assert target.abs().sum() == 0
    assert torch.all(weight[0, :25] == 1) and torch.all(weight[0, 65] == 1)   # no box without labelled points


def test_zero_length_limbs_are_skipped():
    kp = people(1)
    kp[0, 0, 25:65] = torch.tensor([centre(5), centre(5), 1.0])            # every finger bone has length 0
    target, _ = clean_and_as_dense(kp)
    assert target[0, 25, 5, 5] == 1 and target[0, 64, 5, 5] == 1
    assert target[0, 135:].abs().sum() == 0


def test_nan_and_infinite_coordinates_are_not_drawn():
    kp = people(2, value=1)
    kp[0, 0, :, :2] = torch.rand(135, 2) * 80
    kp[0, 0, 3, 0] = float("nan")
    kp[0, 0, 4, 1] = float("inf")
    kp[0, 1, :, 2] = float("nan")                                         # NaN visibility: not drawn either
    kp[0, 1, :, :2] = float("nan")
    target, _ = clean_and_as_dense(kp)
    assert target[0, 3].abs().sum() == 0 and target[0, 4].abs().sum() == 0
    assert target[0, 135 + 2 * pair(1, 3)].abs().sum() == 0 and target[0, 0].max() > 0


def test_nan_in_ignore_counts_as_ignored():
    ignore = torch.zeros(1, 10, 12)
    ignore[0, 2, 2] = float("nan")
    _, weight = run(people(1), ignore=ignore)
    assert torch.isfinite(weight).all() and torch.all(weight[0, :, 2, 2] == 0)


def test_wrong_shapes_and_settings_are_named():
    with pytest.raises(ValueError, match="keypoints must be"):
        Targets()(torch.zeros(1, 2, 133, 3), ALL[None], torch.zeros(1, 10, 12), (80, 96))
    with pytest.raises(ValueError, match="ignore must be"):
        Targets()(torch.zeros(1, 2, 135, 3), ALL[None], torch.zeros(1, 60, 60), (80, 96))
    with pytest.raises(ValueError, match="mask_policy"):
        Targets(mask_policy="coco")
    with pytest.raises(ValueError, match="paf_centre"):
        Targets(paf_centre="centre")


def test_hydra_config_builds_the_defaults():
    conf = Path(__file__).resolve().parents[1] / "conf"
    with initialize_config_dir(config_dir=str(conf / "targets"), version_base="1.3"):
        targets = instantiate(compose(config_name="default"))
    assert isinstance(targets, Targets)
    assert (targets.stride, targets.mask_policy, targets.paf_centre) == (8, "paper", "aligned")
    assert targets.small_weight == pytest.approx(7 / 5.75) and targets.paf_width == 1.0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU (run on the device machine)")
def test_cuda_equals_cpu():
    kp, labelled, ignore = random_scene(torch.Generator().manual_seed(3), 5, 6, (120, 96))
    cpu = Targets()(kp, labelled, ignore, (120, 96))
    gpu = Targets()(kp.cuda(), labelled.cuda(), ignore.cuda(), (120, 96))
    for a, b in zip(cpu, gpu, strict=True):
        assert b.device.type == "cuda"
        torch.testing.assert_close(b.cpu(), a, atol=1e-5, rtol=0)
