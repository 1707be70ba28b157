"""The datamodule on real tars: configuration errors, realised mixing proportions, the batch contract,
bad samples skipped and counted, targets in the worker, fixed epoch length, the presets."""

import collections
import itertools
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import webdataset as wds
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from shard_helpers import ALL_GROUPS, sample, write_source

from datamodules.augment import SCALE_RANGES
from datamodules.mixing import Counter, batch_source, raw_stream
from datamodules.packed_targets import pack, unpack
from datamodules.samples import BadSample, collate, decode
from datamodules.wholebody import WholeBodyDataModule
from src.targets import Targets

CONF = Path(__file__).resolve().parents[1] / "conf"
PROBS = {"a": 0.5, "b": 0.3, "c": 0.2}


@pytest.fixture(autouse=True)
def _single_process(monkeypatch):
    """No rank leaks in from an earlier test or out of this one (set, then deleted: both are undone)."""
    for name in ("RANK", "WORLD_SIZE"):
        monkeypatch.setenv(name, "0")
        monkeypatch.delenv(name)
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("shards")
    write_source(root, "a", n=12, shards=3, size=(24, 24), groups=("body", "foot"))
    write_source(root, "b", n=12, shards=2, size=(24, 24), groups=("lhand", "rhand"), people=2)
    write_source(root, "c", n=12, shards=2, size=(24, 24), groups=("face",), people=3)
    write_source(root, "bg", n=4, shards=1, size=(24, 24), groups=(), people=0)
    write_source(root, "bad", n=12, shards=2, size=(24, 24), corrupt={2: "image", 7: "json", 9: "keypoints"})
    write_source(root, "a", "val", n=9, shards=3, size=(40, 60), first_id=100, corrupt={4: "json"})
    return root


def _dm(root, probs=PROBS, **kw):
    policies = {"a": "body", "b": "hand", "c": "face", "bg": "background", "bad": "body"}
    sources = {n: {"probability": p, "policy": policies[n]} for n, p in probs.items()}
    args = dict(root=str(root), crop=16, batch_size=2, batches_per_epoch=10, num_workers=0, shuffle_buffer=4)
    return WholeBodyDataModule(sources, **{**args, **kw})


def _proportions(batches) -> dict[str, float]:
    counts = collections.Counter(s for b in batches for s in b["source"])
    total = sum(counts.values())
    return {k: v / total for k, v in counts.items()}


@pytest.mark.parametrize("change, match", [
    ({"sources": {"a": {"probability": 1, "policy": "feet"}}}, "'a': unknown policy 'feet'"),
    ({"sources": {"a": {"probability": -0.1, "policy": "body"}}}, "sources.a.probability"),
    ({"sources": {"a": {"probability": 0, "policy": "body"}}}, "all probabilities are zero"),
    ({"mix": "per_epoch"}, "data.mix"),
    ({"crop": 100}, "multiple of 8"),
    ({"rotate": -5}, "data.rotate"),
    ({"flip": 1.5}, "data.flip must be a probability in \\[0, 1\\], got 1.5"),
    ({"targets_on": "worker"}, "needs data.targets"),
])
def test_configuration_errors_name_the_key(root, change, match):
    args = {"sources": {"a": {"probability": 1, "policy": "body"}}, "root": str(root), **change}
    with pytest.raises(ValueError, match=match):
        WholeBodyDataModule(**args)


def test_missing_shard_set_fails_in_setup_or_is_skipped(root):
    dm = WholeBodyDataModule({"a": {"probability": 0.5, "policy": "body"},
                              "zz": {"probability": 0.5, "policy": "hand"}}, root=str(root))
    with pytest.raises(FileNotFoundError, match="'zz'.*zz/train"):
        dm.setup("fit")
    dm = WholeBodyDataModule({"a": {"probability": 0.5, "policy": "body"},
                              "zz": {"probability": 0.25, "policy": "hand"}},
                             root=str(root), on_missing="skip")
    with pytest.warns(UserWarning, match="'zz'"):
        dm.setup("fit")
    assert [(s.name, s.probability) for s in dm.train_sources] == [("a", 1.0)]
    piped = WholeBodyDataModule({"a": {"probability": 1, "policy": "body",
                                       "urls": f"pipe:cat {root}/a/train/a-train-00000{{0..2}}.tar"}},
                                crop=16, batch_size=2, batches_per_epoch=3, num_workers=0)
    assert sum(len(b["key"]) for b in piped.train_dataloader()) == 6
    with pytest.raises(FileNotFoundError, match="missing.tar"):
        WholeBodyDataModule({"a": {"probability": 1, "policy": "body", "urls": str(root / "missing.tar")}}
                            ).setup("fit")


def test_per_sample_mixing_matches_the_probabilities(root):
    dm = _dm(root, batch_size=4, batches_per_epoch=600)  # 2400 samples
    dm.setup("fit")
    props = _proportions(dm.train_dataloader())
    for name, p in PROBS.items():
        assert abs(props[name] - p) < 0.02, props


def test_per_batch_mixing_one_source_per_batch_same_on_every_rank(root, monkeypatch):
    dm = _dm(root, mix="per_batch", batch_size=2, batches_per_epoch=1000)  # 2000 samples
    dm.setup("fit")
    batches = list(dm.train_dataloader())
    assert all(len(set(b["source"])) == 1 for b in batches)
    props = _proportions(batches)
    for name, p in PROBS.items():
        assert abs(props[name] - p) < 0.02, props
    names = [s.name for s in dm.train_sources]
    probs = [s.probability for s in dm.train_sources]
    assert [b["source"][0] for b in batches[:50]] == [names[batch_source(probs, 0, 0, j)] for j in range(50)]
    # two ranks: the same source sequence, disjoint samples
    seen = {}
    for rank in (0, 1):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        seen[rank] = list(_dm(root, mix="per_batch", batches_per_epoch=40).train_dataloader())
    assert [b["source"][0] for b in seen[0]] == [b["source"][0] for b in seen[1]]
    keys = [{k for b in seen[r] for k in b["key"]} for r in (0, 1)]
    assert keys[0] and keys[1] and not keys[0] & keys[1]


def test_per_batch_agrees_across_workers(root):
    """Two loader workers: the loader's j-th batch is still global batch j's source."""
    dm = _dm(root, mix="per_batch", batches_per_epoch=12, num_workers=2)
    dm.setup("fit")
    got = [b["source"][0] for b in dm.train_dataloader()]
    names, probs = [s.name for s in dm.train_sources], [s.probability for s in dm.train_sources]
    assert got == [names[batch_source(probs, 0, 0, j)] for j in range(12)]


def test_batch_contract(root):
    dm = _dm(root, {"a": 1, "b": 1, "c": 1, "bg": 1}, batch_size=6, batches_per_epoch=5)
    dm.setup("fit")
    loader = dm.train_dataloader()
    assert len(loader) == 5
    batches = list(loader)
    assert len(batches) == 5 and dm.padding.name == "bg"
    for b in batches:
        assert b["image"].shape == (6, 3, 16, 16) and b["image"].dtype == torch.uint8
        assert b["keypoints"].shape[0] == 6 and b["keypoints"].shape[2:] == (135, 3)
        assert b["ignore"].shape == (6, 2, 2) and 0 <= b["ignore"].min() and b["ignore"].max() <= 1
        assert b["labelled"].shape == (6, 135) and b["labelled"].dtype == torch.bool
        for i, src in enumerate(b["source"]):
            kp, lab = b["keypoints"][i], b["labelled"][i]
            if src == "bg":
                assert lab.all() and (kp[..., 2] == 2).all()
            if src == "c":  # faces: three people, so P is at least 3 in this batch
                assert kp.shape[0] >= 3 and lab[65:].all() and not lab[25:65].any()
            if src == "a":
                assert lab[:17].all() and lab[19:25].all() and not lab[25:].any()
        # padding rows are (0, 0, 2)
        counts = {"a": 1, "b": 2, "c": 3, "bg": 0}
        for i, src in enumerate(b["source"]):
            pad = b["keypoints"][i, counts[src]:]
            assert (pad[..., 2] == 2).all() and (pad[..., :2] == 0).all()


def _augmented(image: np.ndarray) -> dict:
    return {"image": image, "keypoints": np.zeros((0, 135, 3)), "labelled": np.ones(135, bool),
            "ignore": np.zeros((2, 2), np.float32), "key": "k", "source": "a"}


class _CollateInWorker(torch.utils.data.IterableDataset):
    def __iter__(self):
        images = np.random.default_rng(0).integers(0, 255, (3, 16, 16, 3), dtype=np.uint8)
        batch = collate([_augmented(im) for im in images])
        yield batch["image"].is_shared(), batch["image"].clone(), images


def test_worker_batches_are_made_in_shared_memory():
    """A worker's image batch is built in shared memory (handed over without a second copy), same values."""
    loader = torch.utils.data.DataLoader(_CollateInWorker(), batch_size=None, num_workers=1)
    shared, image, expected = next(iter(loader))
    assert shared and torch.equal(image, torch.as_tensor(expected).permute(0, 3, 1, 2))
    assert not collate([_augmented(np.zeros((16, 16, 3), np.uint8))])["image"].is_shared()


def test_bad_samples_are_skipped_and_counted(root):
    with pytest.warns(UserWarning, match="skipping a bad sample"):
        dm = _dm(root, {"bad": 1.0}, batch_size=4, batches_per_epoch=12)
        dm.setup("fit")
        batches = list(dm.train_dataloader())
    assert len(batches) == 12  # training goes on
    keys = {k for b in batches for k in b["key"]}
    assert keys.isdisjoint({"bad_00002", "bad_00007", "bad_00009"}) and len(keys) == 9
    assert sum(int(dm.on_after_batch_transfer(b, 0)["skipped"]) for b in batches) >= 3  # the module reads it


def test_truncated_shard_is_counted_and_training_goes_on(tmp_path):
    paths = write_source(tmp_path, "cut", n=8, shards=2, size=(24, 24))
    data = paths[1].read_bytes()
    paths[1].write_bytes(data[: len(data) // 2 + 700])  # a shard cut off mid-member
    dm = WholeBodyDataModule(
        {"cut": {"probability": 1, "policy": "body"}}, root=str(tmp_path), crop=16, batch_size=2,
        batches_per_epoch=20, num_workers=0, shuffle_buffer=1)
    with pytest.warns(UserWarning, match="skipping a bad sample"):
        batches = list(dm.train_dataloader())
    assert len(batches) == 20 and sum(int(b["skipped"]) for b in batches) >= 1


def test_a_source_with_nothing_readable_stops_with_its_name(tmp_path):
    write_source(tmp_path, "junk", n=3, shards=1, size=(24, 24), corrupt={0: "image", 1: "json", 2: "image"})
    dm = WholeBodyDataModule({"junk": {"probability": 1, "policy": "body"}}, root=str(tmp_path), crop=16,
                             batch_size=2, batches_per_epoch=2, num_workers=0, shuffle_buffer=1)
    with pytest.warns(UserWarning), pytest.raises(RuntimeError, match="'junk': 1000 bad samples in a row"):
        list(dm.train_dataloader())


@pytest.mark.parametrize("field, value", [("keypoints", (np.nan, 5, 1)), ("keypoints", (3, np.inf, 0)),
                                          ("bbox", [0, 0, np.nan, 9]), ("center", [np.inf, 4]),
                                          ("scale", np.nan)])
def test_a_non_finite_record_is_refused_by_name(field, value):
    """Shards from another tool (or an older version) with NaN or infinite numbers: refused (counted and
    skipped by the streams), never trained as background with a zero loss."""
    kps = np.zeros((135, 3), np.float32)
    kps[:, 2] = 4
    kps[2] = (3, 4, 1)
    person = {"id": 7, "keypoints": kps, "bbox": [0, 0, 9, 9], "center": [4, 4], "scale": 9}
    if field == "keypoints":
        person["keypoints"][0] = value
    else:
        person[field] = value
    person["keypoints"] = person["keypoints"].tolist()
    raw = sample("k", 1, "a", ["body"], [person], np.zeros((12, 12, 3), np.uint8))
    with pytest.raises(BadSample, match=f"person 7 has non-finite {field}"):
        decode(raw)


def test_validation_reads_each_image_once_and_counts_the_bad_one(root):
    dm = _dm(root, val={"a": {"policy": "body"}}, val_batch_size=2, val_size=32, val_num_workers=0)
    dm.setup("validate")
    assert dm.val_gt == {"a": str(root / "a" / "val" / "gt.json")}
    with pytest.warns(UserWarning, match="'a_00004'"):
        batches = list(dm.val_dataloader())
    ids = [int(i) for b in batches for i in b["image_id"]]
    assert sorted(ids) == [100, 101, 102, 103, 105, 106, 107, 108]
    assert sum(int(b["skipped"]) for b in batches) == 1
    b = batches[0]
    assert b["image"].shape[-2:] == (32, 48) and torch.allclose(b["scale"][0], torch.tensor([0.8, 0.8]))
    assert b["input_size"][0].tolist() == [32, 48] and b["size"][0].tolist() == [40, 60]
    assert b["gt"] == [str(root / "a" / "val" / "gt.json")] * len(b["image_id"])  # scored against it


def test_targets_in_the_worker_equal_targets_on_the_device(root):
    targets = Targets()
    dm = _dm(root, {"a": 1, "c": 1}, targets=targets, targets_on="worker", batches_per_epoch=2, num_workers=1)
    dm.setup("fit")
    for b in dm.train_dataloader():
        assert "target" not in b and "packed_targets" in b  # unpacked on the device
        t, w = targets(b["keypoints"], b["labelled"], b["ignore"], (16, 16))
        again = _dm(root, targets=targets).on_after_batch_transfer(dict(b), 0)  # computed on the device
        b = dm.on_after_batch_transfer(b, 0)  # unpacked
        assert b["target"].shape == b["weight"].shape == (2, 439, 2, 2)
        assert torch.equal(t, b["target"]) and torch.equal(w, b["weight"])
        assert torch.equal(again["target"], t) and torch.equal(again["weight"], w)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no GPU"))])
def test_packed_targets_round_trip_bit_exactly(device):
    rng = np.random.default_rng(0)
    target = torch.zeros(2, 439, 31, 31)  # several chunks, and a number of cells not a multiple of 8
    target.view(-1)[rng.choice(target.numel(), 300, replace=False)] = torch.from_numpy(
        rng.normal(size=300).astype(np.float32))
    target.view(-1)[:3] = torch.tensor([-0.0, float("nan"), 1.0])
    weight = torch.from_numpy(rng.choice(np.float32([0, 1, 0.25, 1 - 7 / 255, 7 / 5.75]), target.shape,
                                         p=[0.6, 0.37, 0.01, 0.01, 0.01]))
    weight.view(-1)[-3:] = torch.tensor([-0.0, float("inf"), 1.0])
    packed = pack(target, weight)
    assert sum(v.numel() * v.element_size() for v in packed.values() if torch.is_tensor(v)) < target.numel()
    assert len(packed["target_index"]) == (target.view(torch.int32) != 0).sum()  # -0.0 and NaN included
    assert len(packed["weight_index"]) == ((weight != 0) & (weight != 1)).sum() + 1  # + the -0.0
    moved = {k: v.to(device) if torch.is_tensor(v) else v for k, v in packed.items()}
    for was, got in zip((target, weight), unpack(moved), strict=True):
        assert got.dtype == torch.float32 and got.shape == was.shape and got.device.type == device
        assert torch.equal(got.cpu().view(torch.int32), was.view(torch.int32))


def test_epochs_draw_new_samples(root):
    dm = _dm(root, {"a": 1}, batches_per_epoch=4)
    dm.setup("fit")
    loader = dm.train_dataloader()
    first, second = ([k for b in loader for k in b["key"]] for _ in range(2))
    assert len(first) == len(second) == 8 and first != second


@pytest.mark.parametrize("preset", ["synthetic", "released", "paper"])
def test_presets_compose_and_normalise(preset, tmp_path):
    with initialize_config_dir(config_dir=str(CONF / "data"), version_base="1.3"):
        cfg = compose(config_name=preset, overrides=[f"root={tmp_path}", "on_missing=skip", "num_workers=0",
                                                     "+crop=32", "batches_per_epoch=2"])
    probs = {n: s["probability"] for n, s in cfg.sources.items()}
    assert abs(sum(probs.values()) - 1) < 1e-9
    if preset == "released":
        assert probs["coco"] == 0.73 and cfg.mix == "per_batch" and cfg.scale_ranges == "intended"
    if preset == "paper":
        assert probs["coco"] == 0.765 and cfg.mix == "per_batch" and cfg.scale_ranges == "paper"
    first, second = list(cfg.sources)[:2]
    write_source(tmp_path, first, n=4, shards=1, size=(32, 32))
    write_source(tmp_path, second, n=4, shards=1, size=(32, 32))
    dm = instantiate(cfg)
    with pytest.warns(UserWarning, match="no shards"):
        dm.setup("fit")
    assert {s.name: round(s.probability, 6) for s in dm.train_sources} == {
        n: round(probs[n] / (probs[first] + probs[second]), 6) for n in (first, second)}
    assert len(list(dm.train_dataloader())) == 2


PRESET_SHARES = {  # spec §4.1 (released) and §11.1 (paper), mapped onto this project's sources (docs/data.md)
    "released": {"coco": 0.73, "coco_foot": 0.05, "coco_wholebody": 0.075, "mpii": 0.05, "face_300w": 0.02,
                 "panoptic_hand": 0.035, "onehand10k": 0.01, "freihand": 0.01, "coco_background": 0.02},
    "paper": {"coco": 0.765, "coco_foot": 0.05, "coco_wholebody": 0.05, "mpii": 0.05, "face_300w": 0.01,
              "panoptic_hand": 0.035, "onehand10k": 0.01, "freihand": 0.01, "coco_background": 0.02},
}
POLICY_GROUPS = {"body": ("body", "foot"), "mpii": ("body",), "wholebody": ALL_GROUPS, "face": ("face",),
                 "hand": ("lhand", "rhand"), "background": ()}


@pytest.mark.parametrize("preset", ["released", "paper"])
def test_preset_source_shares_are_realised(preset, tmp_path):
    """Every source of the preset as a small shard set; 2000 samples through the real per-batch mixing give
    each source its share within 2 points, and each source is augmented with the preset's scale range."""
    with initialize_config_dir(config_dir=str(CONF / "data"), version_base="1.3"):
        overrides = [f"root={tmp_path}", "num_workers=0", "+crop=16", "batch_size=2",
                     "batches_per_epoch=1000", "shuffle_buffer=4"]
        cfg = compose(config_name=preset, overrides=overrides)
    shares = {n: s["probability"] for n, s in cfg.sources.items()}
    assert shares == PRESET_SHARES[preset] and abs(sum(shares.values()) - 1) < 1e-9
    for name, spec in cfg.sources.items():
        groups = POLICY_GROUPS[spec["policy"]]
        write_source(tmp_path, name, n=4, shards=1, size=(24, 24), groups=groups, people=1 if groups else 0)
    write_source(tmp_path, "coco_wholebody", "val", n=2, shards=1, size=(24, 24), groups=ALL_GROUPS)
    dm = instantiate(cfg)
    dm.setup("fit")
    stream = dm.train_dataset()
    ranges = SCALE_RANGES[cfg.scale_ranges]
    assert {s.name: stream.policies[s.name].scale for s in stream.sources} == {
        n: ranges[s["policy"]] for n, s in cfg.sources.items()}
    props = _proportions(dm.train_dataloader())
    assert set(props) <= set(shares)
    for name, p in shares.items():
        assert abs(props.get(name, 0.0) - p) < 0.02, (name, props)


def test_rank_env_is_exported_in_setup(root):
    class FakeTrainer:
        global_rank, world_size, current_epoch = 1, 2, 0

    dm = _dm(root)
    dm.trainer = FakeTrainer()
    dm.setup("fit")
    assert os.environ["RANK"] == "1" and os.environ["WORLD_SIZE"] == "2"
    np.testing.assert_allclose(sum(s.probability for s in dm.train_sources), 1.0)


@pytest.mark.parametrize("world", [2, 4])
def test_a_source_with_fewer_shards_than_ranks_feeds_every_rank(tmp_path, world):
    """One tar of 3 samples: ranks split it by position while each gets a share; with more ranks than
    samples every rank reads it whole rather than waiting forever on an empty share."""
    tar = str(tmp_path / "one.tar")
    with wds.TarWriter(tar) as w:
        for i in range(3):
            w.write({"__key__": f"k{i}", "txt": str(i)})
    seen = [{s["__key__"] for s in itertools.islice(raw_stream([tar], r, world, 0, Counter(), shuffle=0), 9)}
            for r in range(world)]
    if world == 2:
        assert seen == [{"k0", "k2"}, {"k1"}]
    else:
        assert seen[:3] == [{"k0"}, {"k1"}, {"k2"}] and seen[3] == {"k0", "k1", "k2"}
