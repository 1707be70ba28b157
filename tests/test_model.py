"""The network, the stage loss and the solver: sizes, shapes, masking, parameter groups."""

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from layouts import sized
from omegaconf import OmegaConf

from src.core.skeleton import BODY_135
from src.model.net import VGG19, PoseNet, StridedStem, count_parameters, load_backbone
from src.training import solver
from src.training.loss import StageLoss, channel_groups

CONF = Path(__file__).resolve().parents[1] / "conf"
PRESETS = sorted(p.stem for p in (CONF / "model").glob("*.yaml") if not p.stem.startswith("_"))


def net_config(preset: str):
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF)):
        return compose(overrides=[f"+model={preset}"]).model


def meta_net(preset: str) -> tuple[PoseNet, int]:
    cfg = net_config(preset)
    with torch.device("meta"):  # no memory, no init cost: sizes only
        return instantiate(cfg.net), cfg.input_size


def test_deep_wholebody_has_the_released_size():
    net, size = meta_net("deep_wholebody")
    assert size == 480
    assert count_parameters(net) == pytest.approx(63.6e6, rel=0.02)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 133  # spec §5.1: 133 conv layers
    prelu = sum(p.numel() for m in net.modules() if isinstance(m, torch.nn.PReLU) for p in m.parameters())
    assert prelu == pytest.approx(22.4e3, rel=0.01)


def test_shallow_wholebody_is_body25_sized():
    net, size = meta_net("shallow_wholebody")
    assert size == 368
    # with BODY_25's own outputs (26 heatmaps incl. background, 26 pairs): the official 26.2 M (spec §5.1)
    cfg = net_config("shallow_wholebody").net
    cfg = {**OmegaConf.to_container(cfg), "layout": sized(26, 26).to_dict()}
    with torch.device("meta"):
        body25 = instantiate(cfg)
    assert count_parameters(body25) == pytest.approx(26.2e6, rel=0.005)
    assert count_parameters(net) == pytest.approx(28.2e6, rel=0.01)  # 439 outputs: +2 M in the 1x1 convs


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_gives_one_output_per_stage(preset):
    net, size = meta_net(preset)
    cfg = net_config(preset).net
    x = torch.zeros(1, 3, size, size, device="meta")
    outs = net(x)
    k, p = net.num_keypoints, net.num_pairs
    assert len(outs) == len(cfg.paf_stages) + len(cfg.cm_stages)
    grid = (size // 8, size // 8)
    for o in outs[: len(cfg.paf_stages)]:
        assert tuple(o.shape) == (1, 2 * p, *grid)
    for o in outs[len(cfg.paf_stages):]:
        assert tuple(o.shape) == (1, k, *grid)
    assert tuple(net.maps(outs).shape) == (1, k + 2 * p, *grid)


def test_tiny_runs_for_real_and_maps_put_heatmaps_first():
    torch.manual_seed(0)
    net = instantiate(net_config("tiny").net)
    outs = net(torch.randn(2, 3, 64, 96))
    maps = net.maps(outs)
    assert maps.shape == (2, 439, 8, 12)
    assert torch.equal(maps[:, :135], outs[-1]) and torch.equal(maps[:, 135:], outs[len(net.paf_stages) - 1])
    assert count_parameters(net) < 2.0e6


def test_init_is_xavier_with_zero_bias_and_prelu_quarter():
    net = PoseNet(StridedStem((8, 8, 8), 0), [8], [[1, 4, 8]], [[1, 4, 8]])
    for m in net.modules():
        if isinstance(m, torch.nn.Conv2d):
            assert torch.all(m.bias == 0)
            area = m.weight[0, 0].numel()
            fan_in, fan_out = m.weight.shape[1] * area, m.weight.shape[0] * area
            assert m.weight.abs().max() <= (6 / (fan_in + fan_out)) ** 0.5 + 1e-6
        if isinstance(m, torch.nn.PReLU):
            assert torch.all(m.weight == 0.25)


def test_zero_outputs_start_every_stage_at_the_all_zero_prediction():
    torch.manual_seed(0)
    net = PoseNet(StridedStem((8, 8, 8), 0), [8], [[1, 4, 8], [1, 4, 8]], [[1, 4, 8]], zero_outputs=True)
    outs = net(torch.randn(2, 3, 32, 32))
    assert len(outs) == 3 and all(torch.count_nonzero(o) == 0 for o in outs)
    assert net.adapter[0].weight.abs().sum() > 0  # only the 1x1 output convs start at zero
    plain = PoseNet(StridedStem((8, 8, 8), 0), [8], [[1, 4, 8]], [[1, 4, 8]])
    assert all(torch.count_nonzero(o) > 0 for o in plain(torch.randn(2, 3, 32, 32)))


def test_bad_stage_spec_names_the_values():
    with pytest.raises(ValueError, match=r"\[0, 4, 8\]"):
        PoseNet(StridedStem((8, 8, 8), 0), [8], [[0, 4, 8]], [[1, 4, 8]])


def test_backbone_loads_torchvision_keys_and_checkpoints(tmp_path):
    src = VGG19()
    state = {f"features.{k}": v for k, v in src.features.state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(3)  # ignored: not a backbone key
    torch.save(state, tmp_path / "vgg19.pth")
    dst = VGG19()
    load_backbone(dst, tmp_path / "vgg19.pth")
    assert torch.equal(dst.features[21].weight, src.features[21].weight)
    ckpt = {"state_dict": {f"net.backbone.{k}": v for k, v in src.state_dict().items()}}
    torch.save(ckpt, tmp_path / "c.ckpt")
    load_backbone(VGG19(), tmp_path / "c.ckpt")
    del state["features.0.weight"]
    torch.save(state, tmp_path / "partial.pth")
    with pytest.raises(ValueError, match="features.0.weight"):
        load_backbone(VGG19(), tmp_path / "partial.pth")
    with pytest.raises(FileNotFoundError, match="nothing.pth"):
        load_backbone(VGG19(), tmp_path / "nothing.pth")


# -- loss --------------------------------------------------------------------------------------------------
def test_channel_groups_partition_the_439_channels():
    groups = channel_groups(BODY_135)
    assert set(groups) == {"body", "foot", "hands", "face"}
    flat = sorted(c for idx in groups.values() for c in idx)
    assert flat == list(range(439))
    assert 19 in groups["foot"] and 25 in groups["hands"] and 65 in groups["face"] and 17 in groups["body"]
    k = BODY_135.pairs.index((9, 25))  # wrist -> thumb is a hand limb
    assert 135 + 2 * k in groups["hands"]


def test_loss_is_caffe_euclidean_and_named():
    torch.manual_seed(0)
    loss = StageLoss()
    target = torch.rand(2, 439, 4, 4)
    weight = torch.rand(2, 439, 4, 4)
    pafs = [torch.rand(2, 304, 4, 4) for _ in range(2)]
    cms = [torch.rand(2, 135, 4, 4)]
    out = loss(pafs, cms, target, weight)
    expect = ((weight[:, :135] * (cms[0] - target[:, :135])) ** 2).sum() / 4
    assert out["cm0"].item() == pytest.approx(expect.item(), rel=1e-5)
    assert out["total"].item() == pytest.approx((out["paf0"] + out["paf1"] + out["cm0"]).item(), rel=1e-6)
    groups = out["body"] + out["foot"] + out["hands"] + out["face"]
    assert groups.item() == pytest.approx(out["total"].item(), rel=1e-5)


def test_zero_weight_gives_zero_gradient_there():
    loss = StageLoss()
    target = torch.rand(1, 439, 4, 4)
    weight = torch.ones(1, 439, 4, 4)
    weight[0, 3] = 0          # a masked heatmap channel
    weight[0, 200, 1, 2] = 0  # one masked PAF cell
    cm = torch.rand(1, 135, 4, 4, requires_grad=True)
    paf = torch.rand(1, 304, 4, 4, requires_grad=True)
    loss([paf], [cm], target, weight)["total"].backward()
    assert torch.all(cm.grad[0, 3] == 0) and cm.grad[0, 4].abs().sum() > 0
    assert paf.grad[0, 65, 1, 2] == 0 and paf.grad[0, 65, 1, 1] != 0
    # and a masked target value does not matter at all
    target[0, 3] = 1e6
    assert torch.isfinite(loss([paf], [cm], target, weight)["total"])


def test_peak_weight_scales_w_on_the_targets_only():
    target = torch.zeros(1, 439, 2, 2)
    target[0, 0, 0, 0] = 1.0
    weight = torch.ones(1, 439, 2, 2)
    cm = torch.zeros(1, 135, 2, 2)
    cm[0, 1, 1, 1] = 1.0  # a false positive on background
    paf = torch.zeros(1, 304, 2, 2)
    plain = StageLoss()([paf], [cm], target, weight)["cm0"]
    peaked = StageLoss(peak_weight=3.0)([paf], [cm], target, weight)["cm0"]
    assert plain.item() == pytest.approx((1 + 1) / 2)      # miss + false positive, / (2N)
    assert peaked.item() == pytest.approx((3 ** 2 + 1) / 2)  # the miss weighs (3 W)^2, background unchanged


def test_heatmap_weights_leave_the_limb_fields_alone():
    target = torch.zeros(1, 439, 2, 2)
    target[0, 0, 0, 0] = 1.0    # a heatmap peak, missed
    target[0, 135, 0, 0] = 1.0  # a PAF cell, missed
    weight = torch.ones(1, 439, 2, 2)
    cm, paf = torch.zeros(1, 135, 2, 2), torch.zeros(1, 304, 2, 2)
    cm[0, 1, 1, 1] = 1.0  # a false positive on background
    out = StageLoss(peak_weight=3.0, cm_peak_weight=2.0, cm_weight=4.0)([paf], [cm], target, weight)
    assert out["paf0"].item() == pytest.approx(3 ** 2 / 2)            # peak_weight on the PAFs
    assert out["cm0"].item() == pytest.approx(4 * (2 ** 2 + 1) / 2)   # cm_peak_weight, then x cm_weight
    assert out["total"].item() == pytest.approx(out["paf0"].item() + out["cm0"].item())


def test_loss_rejects_a_wrong_layout():
    with pytest.raises(ValueError, match="cm0"):
        StageLoss()([torch.zeros(1, 304, 4, 4)], [torch.zeros(1, 25, 4, 4)], torch.zeros(1, 439, 4, 4),
                    torch.ones(1, 439, 4, 4))


# -- solver ------------------------------------------------------------------------------------------------
def test_optimiser_groups_follow_the_released_multipliers():
    net = instantiate(net_config("tiny").net)
    opt = solver.build_optimizer(net, lr=3e-5, weight_decay=5e-4)
    groups = {g["name"]: g for g in opt.param_groups}
    assert groups["backbone/weight"]["lr"] == pytest.approx(3e-5)
    assert groups["backbone/bias"]["lr"] == pytest.approx(6e-5)
    assert groups["stages/weight"]["lr"] == pytest.approx(1.2e-4)
    assert groups["stages/bias"]["lr"] == pytest.approx(2.4e-4)
    assert groups["stages/prelu"]["lr"] == pytest.approx(1.2e-4)
    for name, g in groups.items():
        assert g["weight_decay"] == (5e-4 if name.endswith("weight") else 0.0)
        if name.endswith("weight"):
            assert all(p.dim() == 4 for p in g["params"])
    stage_ids = {id(p) for p in net.paf_stages.parameters()} | {id(p) for p in net.cm_stages.parameters()}
    staged = [p for name, g in groups.items() if name.startswith("stages") for p in g["params"]]
    assert all(id(p) in stage_ids for p in staged)
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(net.parameters()))
    assert opt.defaults["betas"] == (0.9, 0.999)


def test_schedule_halves_at_the_milestones():
    net = PoseNet(StridedStem((8, 8, 8), 0), [8], [[1, 4, 8]], [[1, 4, 8]])
    opt = solver.build_optimizer(net, lr=1.0)
    sched = solver.build_schedule(opt, milestones=[2, 4], gamma=0.5)
    lrs = []
    for _ in range(5):
        lrs.append(next(g["lr"] for g in opt.param_groups if g["name"] == "backbone/weight"))
        opt.step()
        sched.step()
    assert lrs == [1.0, 1.0, 0.5, 0.5, 0.25]
    with pytest.raises(ValueError, match="milestones"):
        solver.build_schedule(opt, milestones=[4, 2])


def test_released_solver_is_the_default_and_5e5_one_override_away():
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF)):
        cfg = compose(overrides=["+model=deep_wholebody"])
        paper = compose(overrides=["+model=deep_wholebody", "model.optimizer.lr=5e-5"])
    assert cfg.model.optimizer.lr == 3e-5 and paper.model.optimizer.lr == 5e-5
    assert list(cfg.model.schedule.milestones) == [200000, 300000, 360000, 420000, 480000, 540000, 600000,
                                                   700000, 800000, 900000]


def _randomised(net: PoseNet) -> PoseNet:
    """Non-trivial BatchNorm statistics and biases (a fresh net's are 0/1 and would hide a folding error)."""
    g = torch.Generator().manual_seed(0)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            for t, lo, hi in ((m.running_mean, -1, 1), (m.running_var, 0.5, 2), (m.weight, 0.5, 1.5),
                              (m.bias, -0.5, 0.5)):
                t.data.copy_(torch.rand(t.shape, generator=g) * (hi - lo) + lo)
        if isinstance(m, torch.nn.Conv2d):
            m.bias.data.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
    return net.eval()


@pytest.mark.parametrize("case", ["tiny", "mixed_tails"])
def test_folded_net_gives_the_same_maps_for_less_work(case):
    """``FoldedPoseNet``: BatchNorm folded into its conv, and a stage's output conv folded into the next
    stages' first conv where the tail is narrower (``mixed_tails``: tails of 4, narrower than the 8 PAF and 5
    CM channels, and of 16, wider; two CM stages, the second reading the first and the last PAF). Same maps
    at a size whose border rows matter, the original net untouched, fewer FLOPs."""
    from src.model.cost import gflops
    from src.model.fold import FoldedPoseNet

    if case == "tiny":
        net = instantiate(net_config("tiny").net)
    else:
        net = PoseNet(StridedStem((8, 8, 8), batch_norm=True), [12], [[1, 4, 4], [1, 4, 16], [2, 4, 4]],
                      [[1, 4, 16], [1, 4, 4]], layout=sized(5, 4), batch_norm=True)
    net = _randomised(net)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    folded = FoldedPoseNet(net)
    x = torch.rand(2, 3, 40, 56) - 0.5
    with torch.no_grad():
        want, got = net.maps(net(x)), folded(x)
    assert got.shape == want.shape
    assert torch.allclose(got, want, atol=1e-5 * want.abs().max().item())
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    if case == "tiny":                                     # stages read features 64 + tail 96, not 64 + 304
        assert folded.cm_stages[0].blocks[0].convs[0].conv.in_channels == 160
        assert gflops(folded, (480, 640)) < 0.85 * gflops(net, (480, 640))
    else:                                                   # folded: tails 4; read as they are: tail 16
        assert [s.blocks[0].convs[0].folded for s in folded.paf_stages[1:]] == [[True], [False]]
        assert [s.blocks[0].convs[0].folded for s in folded.cm_stages] == [[True], [False, True]]
        assert gflops(folded, (40, 56)) < gflops(net, (40, 56))          # no output made twice
