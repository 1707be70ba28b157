"""``model.init_from`` across layouts: heatmap and PAF channels copied by keypoint name
(:func:`src.core.checkpoint.transfer_by_name`), PAFs negated for reversed pairs, ``model.init_names``."""

import json
from pathlib import Path

import pytest
import torch

from src.core import checkpoint
from src.core.skeleton import BODY_135, Layout
from src.model.net import PoseNet, StridedStem
from src.training.module import PoseModule

CROWDPOSE_META = Path("/work/shared/fixtures/custom/crowdpose/meta.json")
STEM = {"_target_": "src.model.net.StridedStem", "channels": [8, 8, 8], "extra": 0}
STAGES = [[1, 8, 16], [1, 8, 16]]
# our own layout, BODY_135 names but for "Crown" (BODY_135 HeadTop through init_names) and "Tail" (none):
# (LElbow, LShoulder), (Crown, UpperNeck) and (UpperNeck, LShoulder) run against BODY_135's pairs
MINI = Layout.from_dict({
    "name": "Mini", "keypoints": ["Crown", "LElbow", "LShoulder", "Nose", "Tail", "UpperNeck"],
    "pairs": [["LElbow", "LShoulder"], ["Nose", "LShoulder"], ["Crown", "UpperNeck"], ["Nose", "Tail"],
              ["UpperNeck", "LShoulder"]],
    "sigmas": [7.0] * 6})
MINI_NAMES = {"HeadTop": "Crown"}
CROWDPOSE_NAMES = {f"{side[0].upper()}{part.capitalize()}": f"{side}_{part}" for side in ("left", "right")
                   for part in ("shoulder", "elbow", "wrist", "hip", "knee", "ankle")}
CROWDPOSE_NAMES.update({"HeadTop": "top_head", "UpperNeck": "neck"})


def net_config(layout: Layout) -> dict:
    return {"_target_": "src.model.net.PoseNet", "backbone": STEM, "adapter": [16], "paf_stages": STAGES,
            "cm_stages": STAGES, "layout": layout.to_dict(), "backbone_init": "none"}


def small_net(layout: Layout, seed: int, adapter: int = 16) -> PoseNet:
    torch.manual_seed(seed)
    return PoseNet(StridedStem((8, 8, 8), 0), [adapter], STAGES, STAGES, layout=layout, backbone_init="none")


def trained(layout: Layout = BODY_135, seed: int = 0, adapter: int = 16) -> PoseNet:
    """A network away from any initialisation (biases too, so a negated bias is seen)."""
    net = small_net(layout, seed, adapter)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p))
    return net


def save(net: PoseNet, path: Path, plain: bool = False) -> Path:
    """A Lightning-like checkpoint of ``net`` (``net.`` keys, the network config), or its plain state dict."""
    state = {f"net.{k}": v for k, v in net.state_dict().items()}
    cfg = {**net_config(net.layout), "adapter": [net.adapter[0].out_channels]}
    torch.save(net.state_dict() if plain else {"state_dict": state, "hyper_parameters": {"net": cfg}}, path)
    return path


def expected(ours: Layout, theirs: Layout, names: dict[str, str]):
    """({our point: their point}, {our pair: (their pair, sign)}) by name, written out independently."""
    back = {o: t for t, o in names.items()}
    kp = {j: theirs.names.index(back.get(n, n)) for j, n in enumerate(ours.names)
          if back.get(n, n) in theirs.names}
    their_pairs = [tuple(p) for p in theirs.pairs]
    pairs = {}
    for j, (a, b) in enumerate(ours.pairs):
        if a in kp and b in kp:
            if (kp[a], kp[b]) in their_pairs:
                pairs[j] = (their_pairs.index((kp[a], kp[b])), 1.0)
            elif (kp[b], kp[a]) in their_pairs:
                pairs[j] = (their_pairs.index((kp[b], kp[a])), -1.0)
    return kp, pairs


def assert_transferred(net: PoseNet, fresh: dict, source: PoseNet, kp: dict, pairs: dict) -> None:
    """Copied (or negated) output rows and reader columns equal the source's, the rest the fresh init; every
    other tensor equals the source's."""
    ours, theirs = net.state_dict(), source.state_dict()
    rows = {"cm": {j: (i, 1.0) for j, i in kp.items()},
            "paf": {2 * j + c: (2 * k + c, s) for j, (k, s) in pairs.items() for c in (0, 1)}}
    size = {"cm": (net.layout.num_keypoints, source.layout.num_keypoints),
            "paf": (2 * net.layout.num_pairs, 2 * source.layout.num_pairs)}
    stages = [(f"paf_stages.{i}", "paf") for i in range(2)] + [(f"cm_stages.{i}", "cm") for i in range(2)]
    special = set()

    def check(key, dim, offsets, copied=0):  # offsets: [(our start, their start, kind)]; first `copied` equal
        got, want, init = (t[key].movedim(dim, 0) for t in (ours, theirs, fresh))
        assert torch.equal(got[:copied], want[:copied]), key
        done = set(range(copied))
        for o0, t0, kind in offsets:
            for o, (t, s) in rows[kind].items():
                assert torch.equal(got[o0 + o], s * want[t0 + t]), (key, o0 + o)
                done.add(o0 + o)
        assert done, key
        for o in range(got.shape[0]):
            if o not in done:
                assert torch.equal(got[o], init[o]), (key, o)
        special.add(key)

    for (stage, kind), reads in zip(stages, net.reads, strict=True):
        check(f"{stage}.out.weight", 0, [(0, 0, kind)])
        check(f"{stage}.out.bias", 0, [(0, 0, kind)])
        if reads:
            key = f"{stage}.blocks.0.convs.0.weight"
            feats = net.adapter[0].out_channels
            offsets, o0, t0 = [], feats, feats
            for r in reads:
                read = stages[r][1]
                offsets.append((o0, t0, read))
                o0, t0 = o0 + size[read][0], t0 + size[read][1]
            check(key, 1, offsets, copied=feats)
    assert {k for k in special if "blocks.0.convs.0" in k} == {
        "paf_stages.1.blocks.0.convs.0.weight", "cm_stages.0.blocks.0.convs.0.weight",
        "cm_stages.1.blocks.0.convs.0.weight"}
    for key, value in ours.items():
        if key not in special:
            assert torch.equal(value, theirs[key]), key
    assert torch.equal(net.backbone.features[0].weight, source.backbone.features[0].weight)


@pytest.mark.parametrize("plain", [False, True], ids=["lightning", "plain_state_dict"])
def test_body135_into_a_small_layout_by_name(tmp_path, plain):
    source = trained()
    path = save(source, tmp_path / "body135.ckpt", plain)
    net = small_net(MINI, seed=1)
    fresh = {k: v.clone() for k, v in net.state_dict().items()}
    summary = checkpoint.init_weights(net, path, strict=True, names=MINI_NAMES)  # strict: heads never fit
    kp, pairs = expected(MINI, BODY_135, MINI_NAMES)
    assert sorted(MINI.names[j] for j in kp) == ["Crown", "LElbow", "LShoulder", "Nose", "UpperNeck"]
    assert {MINI.pairs[j]: s for j, (_, s) in pairs.items()} == {
        (1, 2): -1.0, (3, 2): 1.0, (0, 5): -1.0, (5, 2): -1.0}  # all but (Nose, Tail); three reversed
    assert summary.startswith("copied 5/6 keypoint channels, 4/5 PAF pairs, ")
    other = len(fresh) - 4 * 2 - 3  # out weight+bias of 4 stages, 3 reader convs
    assert f"{other}/{other} other tensors" in summary
    assert_transferred(net, fresh, source, kp, pairs)


@pytest.mark.skipif(not CROWDPOSE_META.is_file(), reason="no /work/shared/fixtures (CrowdPose meta.json)")
def test_body135_into_crowdpose(tmp_path):
    meta = json.loads(CROWDPOSE_META.read_text())
    crowdpose = Layout.from_dict({"name": "CrowdPose", "keypoints": meta["keypoints"],
                                  "pairs": meta["skeleton_by_name"], "flip": meta["flip_pairs_by_name"],
                                  "sigmas": [7.0] * len(meta["keypoints"]), "oks_sigmas": meta["sigmas"]})
    source = trained()
    path = save(source, tmp_path / "body135.ckpt")
    net = small_net(crowdpose, seed=1)
    fresh = {k: v.clone() for k, v in net.state_dict().items()}
    summary = checkpoint.init_weights(net, path, names=CROWDPOSE_NAMES)
    kp, pairs = expected(crowdpose, BODY_135, CROWDPOSE_NAMES)
    assert len(kp) == 14
    # all but shoulder-shoulder (no such BODY_135 pair); ankle-knee, knee-hip and head-neck run reversed
    assert len(pairs) == 14 and sum(s < 0 for _, s in pairs.values()) == 5
    assert summary.startswith("copied 14/14 keypoint channels, 14/15 PAF pairs, ")
    assert_transferred(net, fresh, source, kp, pairs)


def test_a_name_map_naming_a_point_of_neither_layout_is_refused(tmp_path):
    path = save(trained(), tmp_path / "body135.ckpt")
    net = small_net(MINI, seed=1)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(ValueError, match=r"model.init_names: 'hed' is not a keypoint of BODY_135"):
        checkpoint.init_weights(net, path, names={"hed": "Crown"})
    with pytest.raises(ValueError, match=r"model.init_names: 'Crwn' is not a keypoint of Mini"):
        checkpoint.init_weights(net, path, names={"HeadTop": "Crwn"})
    with pytest.raises(ValueError, match=r"model.init_names: 'Crown' is not a keypoint of BODY_135"):
        checkpoint.init_weights(net, path, names={"Crown": "HeadTop"})  # the map's direction turned round
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())


def test_the_same_layout_copies_every_tensor_and_strict_still_refuses_another_shape(tmp_path):
    source = trained(MINI)
    net = small_net(MINI, seed=1)
    assert checkpoint.init_weights(net, save(source, tmp_path / "mini.ckpt")) == []
    for (k, a), b in zip(source.state_dict().items(), net.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    wider = trained(MINI, adapter=12)
    path = save(wider, tmp_path / "wider.ckpt")
    shapes = r"adapter.0.weight: checkpoint \(12, 8, 3, 3\), network \(16, 8, 3, 3\)"
    with pytest.raises(ValueError, match=shapes):
        checkpoint.init_weights(small_net(MINI, seed=1), path)
    net = small_net(MINI, seed=1)
    odd = checkpoint.init_weights(net, path, strict=False)
    assert odd and all("adapter" in line or "blocks.0.convs.0.weight" in line for line in odd)
    assert torch.equal(net.cm_stages[1].out.weight, wider.cm_stages[1].out.weight)


def test_pose_module_init_from_another_layout_by_name(tmp_path):
    source = trained()
    path = save(source, tmp_path / "body135.ckpt")
    module = PoseModule(net=net_config(MINI), input_size=64, optimizer={"lr": 1e-3},
                        schedule={"milestones": []}, init_from=str(path), init_names=MINI_NAMES)
    assert module.hparams.init_names == MINI_NAMES
    crown, head_top = MINI.names.index("Crown"), BODY_135.names.index("HeadTop")
    reversed_pair = MINI.pairs.index((1, 2))  # (LElbow, LShoulder); BODY_135 has (LShoulder, LElbow)
    theirs = BODY_135.pairs.index((BODY_135.index("LShoulder"), BODY_135.index("LElbow")))
    for i in range(2):
        got = module.net.cm_stages[i].out.weight[crown]
        assert torch.equal(got, source.cm_stages[i].out.weight[head_top])
        got = module.net.paf_stages[i].out.bias[2 * reversed_pair: 2 * reversed_pair + 2]
        assert torch.equal(got, -source.paf_stages[i].out.bias[2 * theirs: 2 * theirs + 2])
    assert torch.equal(module.net.adapter[0].weight, source.adapter[0].weight)
