"""src.inference: the flip test's channel bookkeeping, the precision switch; the OpenPose-style overlay."""

import numpy as np
import pytest
import torch

from bench.scenes import crowd
from src.core.skeleton import BODY_135
from src.decoder.draw import draw_people, style
from src.inference import Inference, multiscale_maps, unflip
from src.targets import Targets


def _maps(kp: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    labelled = torch.ones(1, BODY_135.num_keypoints, dtype=torch.bool)
    return Targets()(torch.from_numpy(kp)[None], labelled, None, size)[0]


def test_unflip_brings_the_mirrored_image_maps_back_onto_the_original():
    """Maps rendered for the mirror image (people mirrored, left and right swapped) come back equal to the
    original maps: heatmaps swapped, PAFs read from their mirror pair with the right signs."""
    size = (240, 320)  # a multiple of the stride: cell g mirrors onto cell W/8 - 1 - g exactly
    _, kp = crowd(3, size, seed=2)
    mirrored = kp.copy()
    mirrored[..., 0] = size[1] - 1 - kp[..., 0]
    mirrored = mirrored[:, BODY_135.flip_index]
    maps, mirror_maps = _maps(kp, size), _maps(mirrored, size)
    back = unflip(maps, mirror_maps, BODY_135)  # mirror_maps: a perfect network's answer to the mirror image
    assert (maps.abs() > 0.5).sum() > 1000  # the scene is not empty
    assert torch.allclose(back, maps, atol=1e-5)
    # and a wrong table would show: without the channel swap the heatmaps disagree
    naive = (maps + mirror_maps.flip(-1)) / 2
    assert not torch.allclose(naive, maps, atol=1e-2)


def test_flip_table_covers_every_pair_with_a_mirror():
    source, sign = BODY_135.flip_channels
    k = BODY_135.num_keypoints
    assert sorted(source[:k].tolist()) == list(range(k))
    unmirrored = [BODY_135.pairs[p] for p in range(BODY_135.num_pairs) if sign[k + 2 * p] == 0]
    names = {(BODY_135.names[a], BODY_135.names[b]) for a, b in unmirrored}
    # the released eye rings and mouth loops are open on one side only: 4 pairs have no mirror pair
    assert names == {("REye3", "REye4"), ("LEye3", "LEye4"), ("OMouth6", "OMouth7"), ("IMouth4", "IMouth5")}


def test_flip_runs_the_mirrored_input_and_averages():
    calls = []

    def model(x):
        calls.append(x.clone())
        return torch.zeros(x.shape[0], BODY_135.num_channels, x.shape[2] // 8, x.shape[3] // 8)

    x = torch.rand(1, 3, 60, 84)
    out = multiscale_maps(model, x, [1.0, 0.5], flip=BODY_135)
    assert [m.shape[-2:] for m in out] == [(8, 11), (4, 6)]
    assert len(calls) == 4 and torch.equal(calls[1], calls[0].flip(-1))  # padded to 64 x 88, then mirrored


def test_precision_other_than_fp32_needs_cuda():
    with pytest.raises(ValueError, match="needs device=cuda"):
        Inference(lambda x: x, precision="bf16", device="cpu")
    with pytest.raises(ValueError, match="precision must be one of"):
        Inference(lambda x: x, precision="int8")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_half_precision_maps_are_close_to_fp32_on_cuda():
    """Also the folded network a checkpoint loads as (its edge term under autocast too)."""
    from src.inference import NetworkModel
    from src.model.fold import FoldedPoseNet
    from src.model.net import PoseNet, StridedStem

    net = PoseNet(StridedStem([16, 32, 64]), adapter=[32, 32], paf_stages=[[1, 32, 32], [1, 32, 32]],
                  cm_stages=[[1, 32, 32]], backbone_init="none").cuda().eval()
    image = torch.randint(0, 256, (1, 3, 64, 96), dtype=torch.uint8)
    ref = Inference(NetworkModel(net), device="cuda").maps(image)[0]
    for model in (NetworkModel(net), FoldedPoseNet(net, "cuda")):
        for precision in ("fp32", "bf16", "fp16"):
            got = Inference(model, device="cuda", precision=precision).maps(image)[0]
            tolerance = 1e-4 if precision == "fp32" else 0.05
            assert got.dtype == torch.float32
            assert torch.allclose(got, ref, atol=tolerance * ref.abs().max() + 1e-3), precision


def test_overlay_draws_anatomical_limbs_not_paf_pairs_with_confidence_alpha():
    image = np.zeros((200, 200, 3), np.uint8)
    kp = np.zeros((BODY_135.num_keypoints, 3), np.float32)
    for name, xy in (("LShoulder", (50, 50)), ("LWrist", (150, 150))):  # a PAF pair, not a limb
        kp[BODY_135.index(name)] = (*xy, 1.0)
    drawn = draw_people(image, [kp]).max(2)
    assert drawn[100, 100] == 0 and drawn[50, 50] > 0  # the points, but no line between them
    kp[BODY_135.index("LElbow")] = (100, 100, 1.0)
    strong = draw_people(image, [kp]).astype(int).sum()
    kp[BODY_135.index("LElbow"), 2] = 0.05
    weak = draw_people(image, [kp]).astype(int).sum()
    assert draw_people(image, [kp]).max(2)[75, 75] > 0 and weak < 0.8 * strong
    assert len(style(BODY_135)[0]) == sum(len(v) for v in BODY_135.limbs.values()) == 128
