"""conf/: every preset composes, and each fact is stated once (no preset key that conf/train.yaml overrides
unread, one stride, overfit_real on smoke's recipe, data=paper as data=released plus its own shares)."""

from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

CONF = Path(__file__).resolve().parents[1] / "conf"
GROUPS = ("data", "model", "targets", "decoder", "trainer", "logger", "callbacks")


def presets(group: str) -> list[str]:
    """Selectable options of a group (nested folders too); ``_name`` files are shared bases, not presets."""
    root = CONF / group
    return sorted(str(p.relative_to(root).with_suffix("")) for p in root.rglob("*.yaml")
                  if not p.name.startswith("_"))


def raw(path: Path) -> dict:
    body = yaml.safe_load(path.read_text()) or {}
    body.pop("defaults", None)
    return body


def compose_train(*overrides: str):
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF)):
        return compose("train", overrides=list(overrides))


def flat(node, prefix: str = "") -> dict:
    """{dotted key: leaf value} of a nested dict (an empty dict is a leaf)."""
    if not isinstance(node, dict) or not node:
        return {prefix.rstrip("."): node}
    out = {}
    for key, value in node.items():
        out.update(flat(value, f"{prefix}{key}."))
    return out


def overlap(preset: dict, later: dict, prefix: str = "") -> list[str]:
    """Dotted keys ``preset`` sets that ``later`` (merged on top of it every time) sets too: the preset's
    value there is never read."""
    found = []
    for key, value in preset.items():
        if key not in later:
            continue
        if isinstance(value, dict) and isinstance(later[key], dict):
            found += overlap(value, later[key], f"{prefix}{key}.")
        else:
            found.append(f"{prefix}{key}")
    return found


def restated(child: dict, parent: dict) -> list[str]:
    """Dotted keys ``child`` sets to the value ``parent`` (which it extends) already gives them."""
    mine, theirs = flat(child), flat(parent)
    return sorted(k for k, v in mine.items() if k in theirs and theirs[k] == v)


# -- everything composes -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", presets("experiment"))
def test_experiment_composes(name):
    cfg = compose_train(f"+experiment={name}")
    OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves
    assert cfg.name == name and cfg.data.crop == cfg.model.input_size == cfg.data.val_size


@pytest.mark.parametrize("name", presets("data"))
def test_data_preset_composes(name):
    cfg = compose_train(f"data={name}")
    data = OmegaConf.to_container(cfg.data, resolve=True)
    assert data["crop"] == data["val_size"] == cfg.model.input_size and data["sources"] and data["val"]
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF)):
        evaluate = compose("evaluate", overrides=[f"data={name}"])  # the entry point that reads data alone
    assert flat(OmegaConf.to_container(evaluate.data)) == {
        k: v for k, v in flat(OmegaConf.to_container(compose_train(f"data={name}").data)).items()
        if k not in ("crop", "val_size", "targets", "layout")}


@pytest.mark.parametrize("name", presets("model"))
def test_model_preset_composes(name):
    cfg = compose_train(f"model={name}")
    model = OmegaConf.to_container(cfg.model, resolve=True)
    assert model["net"]["_target_"] and model["input_size"] % 8 == 0 and model["decoder"] == model_decoder()


def model_decoder() -> dict:
    return OmegaConf.to_container(compose_train().decoder, resolve=True)


SWEEP_EXPERIMENT = {"ablation": "deep_wholebody", "ablation_matched": "deep_wholebody",
                    "table1": "deep_wholebody", "table1_cpu": "smoke", "tiny_pair": "smoke"}


@pytest.mark.parametrize("sweep", presets("sweep"))
def test_sweep_first_combination_composes(sweep):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    base = [f"+experiment={SWEEP_EXPERIMENT[sweep]}", f"+sweep={sweep}"]
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF)):
        params = compose("train", overrides=base, return_hydra_config=True).hydra.sweeper.params
        first = []
        for key, value in params.items():
            parsed = OverridesParser.create().parse_overrides([f"{key}={value}"])[0]
            value = next(parsed.sweep_string_iterator()) if parsed.is_sweep_override() else parsed.value()
            first.append(f"{key}={value}")
        cfg = compose("train", overrides=base + first)
    assert cfg.name == sweep and cfg.callbacks.run_record._target_ == "src.training.sweep_record.RunRecord"
    assert cfg.data.crop == cfg.model.input_size


# -- no preset key that train.yaml overrides unread ----------------------------------------------------------
def test_overlap_flags_a_dead_preset_key():
    later = raw(CONF / "train.yaml")["data"] | {"nested": {"a": 1}}
    assert overlap({"crop": 480, "batch_size": 8, "nested": {"a": 2, "b": 3}}, later) == ["crop", "nested.a"]
    assert overlap({"batch_size": 8, "nested": {"b": 3}}, later) == []
    assert restated({"m": {"lr": 2e-3, "x": 1}}, {"m": {"lr": 2e-3, "x": 2}}) == ["m.lr"]


@pytest.mark.parametrize("group", GROUPS)
def test_train_yaml_overrides_no_preset_key(group):
    later = raw(CONF / "train.yaml").get(group) or {}
    dead = {str(p.relative_to(CONF)): overlap(raw(p), later) for p in sorted((CONF / group).rglob("*.yaml"))}
    assert not {k: v for k, v in dead.items() if v}, f"set in conf/train.yaml's {group}: block, never read"


@pytest.mark.parametrize("name", presets("experiment"))
def test_experiment_restates_nothing_it_inherits(name):
    """An experiment that extends another (a defaults entry in its group) sets only what differs."""
    text = yaml.safe_load((CONF / "experiment" / f"{name}.yaml").read_text())
    parents = [d for d in text.get("defaults", []) if isinstance(d, str) and d != "_self_"]
    for parent in parents:
        assert restated(raw(CONF / "experiment" / f"{name}.yaml"),
                        raw(CONF / "experiment" / f"{parent}.yaml")) == [], parent


# -- one stride ----------------------------------------------------------------------------------------------
def keys(node) -> set[str]:
    if isinstance(node, dict):
        return set(map(str, node)) | {k for v in node.values() for k in keys(v)}
    if isinstance(node, list):
        return {k for v in node for k in keys(v)}
    return set()


def test_stride_is_set_only_by_the_oracle_option():
    setting = sorted(str(p.relative_to(CONF)) for p in CONF.rglob("*.yaml")
                     if "stride" in keys(yaml.safe_load(p.read_text())))
    assert setting == ["oracle.yaml"]


# -- overfit_real is smoke's recipe on its own data ----------------------------------------------------------
def test_overfit_real_inherits_smoke():
    smoke, real = compose_train("+experiment=smoke"), compose_train("+experiment=overfit_real")
    assert real.model.optimizer == smoke.model.optimizer and real.model.loss == smoke.model.loss
    assert real.model.net.zero_outputs is True and real.model.net == smoke.model.net
    own = keys(yaml.safe_load((CONF / "experiment" / "overfit_real.yaml").read_text()))
    assert not own & {"lr", "stage_lr_mult", "peak_weight", "cm_peak_weight", "cm_weight", "zero_outputs"}
    # the data are conf/data/overfit_real's (not smoke's batch or rotation), at the experiment's input size
    preset = compose_train("data=overfit_real", "model=tiny", "model.input_size=320")
    assert real.data == preset.data and real.data.rotate == 5.0 and real.data.batch_size == 4


# -- data=paper is data=released with the paper's shares and scale ranges ------------------------------------
def test_paper_differs_from_released_only_in_its_own_values():
    released = flat(OmegaConf.to_container(compose_train("data=released").data))
    paper = flat(OmegaConf.to_container(compose_train("data=paper").data))
    assert set(released) == set(paper)
    assert {k for k in paper if paper[k] != released[k]} == {
        "sources.coco.probability", "sources.coco_wholebody.probability", "sources.face_300w.probability",
        "scale_ranges"}
    assert (paper["sources.coco.probability"], paper["scale_ranges"]) == (0.765, "paper")
