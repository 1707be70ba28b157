"""The ablation sweep: run records -> report (table + PNG), width matching, and a real two-run sweep."""

import json
import subprocess
import sys
from pathlib import Path

import cv2
import lightning as L
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from bench.scenes import crowd
from src import sweep_report
from src.export import export
from src.match_runtime import match, measure, scale_widths
from src.model import cost
from src.predict import predict
from src.training.sweep_record import RunRecord

ROOT = Path(__file__).resolve().parents[1]
PARTS = {"body": 0.5, "foot": 0.4, "face": 0.3, "lefthand": 0.2, "righthand": 0.1, "wholebody": 0.25}


def tiny_net() -> dict:
    with initialize_config_dir(version_base="1.3", config_dir=str(ROOT / "conf")):
        return OmegaConf.to_container(compose("train", overrides=["model=tiny"]).model.net, resolve=True)


def write_record(root: Path, name: str, latency: float, **extra) -> None:
    run = root / name
    run.mkdir(parents=True)
    rec = {"model": name, "params_m": 1.5, "gflops_480": 10.0, "latency_ms": latency,
           "latency_device": "cpu:1 threads", "ap": dict(PARTS), **extra}
    (run / "run_record.json").write_text(json.dumps(rec))


# -- report (fast, handmade records) -------------------------------------------------------------------------
def test_report_table_sorted_by_latency_with_plot(tmp_path, capsys):
    write_record(tmp_path, "slow", 300.0)
    write_record(tmp_path, "fast", 100.0, ap={**PARTS, "hand": 0.9})
    sweep_report.main([str(tmp_path)])
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [r.split("|")[1].strip() for r in rows] == ["fast", "slow"]
    cells = [c.strip() for c in rows[1].split("|")[1:-1]]
    # hand = mean of left and right when the record has no "hand"
    assert cells[4] == "300.0" and cells[6:] == ["0.500", "0.400", "0.300", "0.150", "0.250"]
    assert rows[0].split("|")[-3].strip() == "0.900"  # a recorded hand AP is used as is
    assert (tmp_path / "sweep_report.png").stat().st_size > 5000
    assert (tmp_path / "sweep_report.md").read_text().count("\n") == 4


def test_report_bad_input_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="no run_record.json"):
        sweep_report.load_records(tmp_path)
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "run_record.json").write_text(json.dumps({"model": "x", "params_m": 1}))
    with pytest.raises(ValueError, match="lacks field 'gflops_480'"):
        sweep_report.load_records(tmp_path)
    (tmp_path / "a" / "run_record.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        sweep_report.load_records(tmp_path)


# -- width matching -----------------------------------------------------------------------------------------
def test_scale_widths_rounds_to_multiples_of_eight_or_the_given_multiple():
    net = tiny_net()
    scaled = scale_widths(net, 0.7)
    assert scaled["paf_stages"] == [[2, 32, 64], [2, 32, 64]] and scaled["cm_stages"] == [[2, 32, 64]]
    assert scale_widths(net, 0.01)["paf_stages"][0] == [2, 8, 8]
    assert scale_widths(net, 0.7, multiple=4)["paf_stages"][0] == [2, 32, 68]  # 33.6 -> 32, 67.2 -> 68
    assert scale_widths(net, 0.01, multiple=4)["paf_stages"][0] == [2, 4, 4]
    assert scaled["adapter"] == net["adapter"] and net["paf_stages"][0] == [2, 48, 96]  # input untouched


def test_match_reaches_the_target_within_five_percent():
    net = tiny_net()
    goal = 2.5 * measure(net, "gflops", (480, 480), "cpu", 1)
    matched, factor, search = match(net, goal, "gflops", (480, 480))
    assert factor > 1 and len(search) <= 24
    with torch.device("meta"):
        got = cost.gflops(instantiate(matched), (480, 480))
    assert abs(got / goal - 1) <= 0.05
    assert all(w % 8 == 0 for _, w, t in matched["paf_stages"] + matched["cm_stages"] for w in (w, t))


def test_match_runtime_cli_writes_a_usable_preset(tmp_path):
    cmd = [sys.executable, "-m", "src.match_runtime", "model=tiny", "target=shallow_wholebody",
           "metric=gflops", f"out_dir={tmp_path}"]
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    summary = json.loads(run.stdout.strip().splitlines()[-1])
    assert abs(summary["ratio"] - 1) <= 0.05
    preset = OmegaConf.load(tmp_path / "tiny_as_shallow_wholebody.yaml")
    assert list(preset.defaults) == ["/model/tiny@_here_", "_self_"]  # everything else from tiny
    net = OmegaConf.merge(tiny_net(), preset.net)
    with torch.device("meta"):
        got = cost.gflops(instantiate(net), (480, 480))
    assert got == pytest.approx(summary["value"])


def test_match_on_measured_latency_stops_within_its_budget():
    matched, factor, search = match(tiny_net(), goal=1e9, metric="latency", size=(32, 32), max_steps=3,
                                    repeats=1)
    # an unreachable goal: the bracket doubles the widths until the budget of measurements is spent
    assert [t["factor"] for t in search] == [1.0, 2.0, 4.0] and factor in (1.0, 2.0, 4.0)


# -- the run record -----------------------------------------------------------------------------------------
class _Validated(L.LightningModule):
    """The two things RunRecord reads from a PoseModule after validation: ``net`` and ``last_metrics``."""

    def __init__(self, net: torch.nn.Module, metrics: dict):
        super().__init__()
        self.net, self.last_metrics = net, metrics


def test_run_record_writes_costs_and_ap(tmp_path):
    net = instantiate(tiny_net())
    metrics = {part: {"AP": ap, "AR": ap + 0.1} for part, ap in PARTS.items()}
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_checkpointing=False)
    callback = RunRecord(str(tmp_path / "run"), "tiny", "model.net.adapter=[96,64]", latency_size=(64, 64),
                         latency_repeats=1)
    callback.on_validation_end(trainer, _Validated(net, metrics))
    rec = json.loads((tmp_path / "run" / "run_record.json").read_text())
    assert rec["model"] == "tiny" and rec["overrides"] == "model.net.adapter=[96,64]"
    assert rec["global_step"] == 0
    assert rec["params_m"] == pytest.approx(cost.parameters_m(net))
    assert rec["gflops_480"] == pytest.approx(cost.gflops(net, (480, 480))) and rec["latency_ms"] > 0
    assert rec["latency_size"] == [64, 64] and rec["latency_device"].startswith("cpu:")
    assert rec["ap"] == PARTS and rec["metrics"]["face"]["AR"] == pytest.approx(0.4)
    assert net.training  # the latency measurement leaves the network's mode as it found it
    assert sweep_report.load_records(tmp_path)[0]["model"] == "tiny"  # the report reads it


# -- a real two-run sweep -----------------------------------------------------------------------------------
@pytest.mark.slow  # 25-85 s here (load): shards, two training runs in a multirun, report, export, predict
def test_two_run_sweep_records_and_report(tmp_path):
    shards, sweep = tmp_path / "shards", tmp_path / "sweep"
    subprocess.run([sys.executable, "-m", "sharding", f"out_dir={shards}", "synthetic.train_images=12",
                    "synthetic.val_images=4"], cwd=ROOT, check=True, capture_output=True, timeout=300)
    cmd = [sys.executable, "-m", "src.train", "-m", "+experiment=smoke", "+sweep=tiny_pair",
           f"hydra.sweep.dir={sweep}", f"data.root={shards}", "logger=csv", "model.input_size=128",
           "data.batch_size=2", "data.num_workers=0", "data.val_num_workers=0", "data.val_batch_size=4",
           "trainer.max_steps=2", "trainer.val_check_interval=2", "trainer.enable_model_summary=false",
           "~callbacks.progress", "callbacks.run_record.latency_size=[64,64]"]
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    records = sweep_report.load_records(sweep)
    assert sorted(Path(r["path"]).name for r in records) == ["0_tiny", "1_tiny"]
    wide, narrow = sorted(records, key=lambda r: -r["params_m"])
    assert "adapter=[96,64]" in wide["overrides"] and "adapter=[48,32]" in narrow["overrides"]
    assert wide["gflops_480"] > narrow["gflops_480"] > 0 and narrow["latency_ms"] > 0
    for rec in records:
        assert rec["global_step"] == 2 and set(rec["ap"]) >= {"body", "foot", "face", "wholebody"}
        assert set(rec["metrics"]["body"]) >= {"AP", "AR"}
    report = subprocess.run([sys.executable, "-m", "src.sweep_report", str(sweep)], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert report.returncode == 0, report.stderr[-2000:]
    assert "| 0_tiny | tiny |" in report.stdout and "| 1_tiny | tiny |" in report.stdout
    assert (sweep / "sweep_report.png").is_file()
    # a checkpoint the sweep trained goes through export and predict
    ckpt = sweep / "0_tiny" / "checkpoints" / "last.ckpt"
    export(None, "onnx", tmp_path / "run0.onnx", ckpt_path=ckpt, check_sizes=[[128, 128], [96, 160]])
    cv2.imwrite(str(tmp_path / "scene.png"), crowd(2, (128, 160))[0])
    with initialize_config_dir(version_base="1.3", config_dir=str(ROOT / "conf")):
        cfg = compose("predict", overrides=[f"ckpt_path={tmp_path / 'run0.onnx'}", "height=128",
                                            f"input={tmp_path / 'scene.png'}", f"out={tmp_path / 'pred'}",
                                            "progress=false"])
    summary = predict(cfg)
    assert summary["processed"] == 1 and (tmp_path / "pred" / "scene_keypoints.json").is_file()


# -- the shipped sweeps -------------------------------------------------------------------------------------
@pytest.mark.parametrize("sweep, count", [("ablation", 6), ("ablation_matched", 6), ("tiny_pair", 1),
                                          ("table1", 6)])
def test_sweeps_compose_every_listed_model(sweep, count):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    with initialize_config_dir(version_base="1.3", config_dir=str(ROOT / "conf")):
        cfg = compose("train", overrides=["+experiment=deep_wholebody", f"+sweep={sweep}"],
                      return_hydra_config=True)
        choices = OverridesParser.create().parse_overrides([f"model={cfg.hydra.sweeper.params.model}"])
        models = list(choices[0].sweep_iterator()) if choices[0].is_sweep_override() else [choices[0].value()]
        assert len(models) == count
        assert cfg.callbacks.run_record._target_ == "src.training.sweep_record.RunRecord"
        for name in models:
            run = compose("train", overrides=["+experiment=deep_wholebody", f"+sweep={sweep}",
                                              f"model={name}"])
            assert run.trainer.strategy in ("ddp_spawn", "auto")


def test_matched_presets_cost_what_the_reference_costs():
    matched = sorted((ROOT / "conf" / "model" / "matched").glob("*_as_deep_wholebody.yaml"))
    assert len(matched) == 5
    with initialize_config_dir(version_base="1.3", config_dir=str(ROOT / "conf")):
        nets = {p.stem: compose("train", overrides=[f"model=matched/{p.stem}"]).model.net for p in matched}
        reference = compose("train", overrides=["model=deep_wholebody"]).model.net
    with torch.device("meta"):
        goal = cost.gflops(instantiate(reference), (480, 480))
        for name, net in nets.items():
            assert abs(cost.gflops(instantiate(net), (480, 480)) / goal - 1) <= 0.05, name


# -- paper Table 1 (spec §11.3) ------------------------------------------------------------------------------
TABLE1 = {  # preset -> (PAF stages, blocks, first width, last width, CM blocks, CM width), as printed
    "table1_paf1x10_256_cm10x256": (1, 10, 256, 256, 10, 256),
    "table1_paf2x8_128-288_cm8x256": (2, 8, 128, 288, 8, 256),
    "table1_paf2x10_128-256_cm10x256": (2, 10, 128, 256, 10, 256),
    "table1_paf3x8_96-256_cm8x192": (3, 8, 96, 256, 8, 192),
    "table1_paf4x8_96-256_cm8x224": (4, 8, 96, 256, 8, 224),
    "table1_paf5x8_64-256_cm5x256": (5, 8, 64, 256, 5, 256),
}


def test_table1_presets_have_the_papers_structures_and_the_same_cost():
    """The six rows as printed (stage counts, blocks, first/last width, CM), and the six models the table1
    sweep trains (rows 1-3, 5, 6 GFLOPs-matched to row 4) built on the meta device: every stage structure
    kept, GFLOPs at 480x480 within 5% of each other."""
    from src.model.net import apply_width_rule

    with initialize_config_dir(version_base="1.3", config_dir=str(ROOT / "conf")):
        cfg = compose("train", overrides=["+experiment=deep_wholebody", "+sweep=table1"],
                      return_hydra_config=True)
        swept = [m.strip() for m in str(cfg.hydra.sweeper.params.model).split(",")]
        printed = {n: compose("train", overrides=[f"model={n}"]).model.net for n in TABLE1}
        trained = {n: compose("train", overrides=[f"model={n}"]).model.net for n in swept}
    assert [sweep_report.paper_row(n) for n in swept] == list(sweep_report.PAPER_TABLE1.values())
    for name, (stages, blocks, first, last, cm_blocks, cm_width) in TABLE1.items():
        paf = apply_width_rule(printed[name].paf_stages, printed[name].width_rule)
        assert [s[0] for s in paf] == [blocks] * stages and (paf[0][1], paf[-1][1]) == (first, last), name
        assert [list(c[:2]) for c in printed[name].cm_stages] == [[cm_blocks, cm_width]], name
        widths = [s[1] for s in paf]
        assert widths == sorted(widths), name  # linear: a ramp from first to last
    flops = {}
    with torch.device("meta"):
        for name, net_cfg in trained.items():
            net = instantiate(net_cfg)
            stages, blocks, *_, cm_blocks, _ = TABLE1[name.split("/")[-1].split("_as_")[0]]
            assert [len(s.blocks) for s in net.paf_stages] == [blocks] * stages, name
            assert [len(s.blocks) for s in net.cm_stages] == [cm_blocks], name
            flops[name] = cost.gflops(net, (480, 480))
    assert max(flops.values()) / min(flops.values()) - 1 <= 0.05, flops


def test_table1_cpu_rows_keep_the_structures_at_equal_cost():
    """+sweep=table1_cpu: the same six stage/block structures, in the paper's order, GFLOPs at the CPU size
    (256x256) within 5% of each other, each at most an eighth of its printed row's widths (+ rounding)."""
    with initialize_config_dir(version_base="1.3", config_dir=str(ROOT / "conf")):
        cfg = compose("train", overrides=["+experiment=smoke", "+sweep=table1_cpu"], return_hydra_config=True)
        swept = [m.strip() for m in str(cfg.hydra.sweeper.params.model).split(",")]
        nets = {n: compose("train", overrides=[f"model={n}"]).model.net for n in swept}
    assert [sweep_report.paper_row(n) for n in swept] == list(sweep_report.PAPER_TABLE1.values())
    assert cfg.trainer.max_steps == cfg.trainer.val_check_interval  # one validation, at the end
    flops = {}
    with torch.device("meta"):
        for name, (stages, blocks, _, last, cm_blocks, cm_width) in zip(swept, TABLE1.values(), strict=True):
            net = instantiate(nets[name])
            assert [len(s.blocks) for s in net.paf_stages] == [blocks] * stages, name
            assert [len(s.blocks) for s in net.cm_stages] == [cm_blocks], name
            assert nets[name].paf_stages[-1][1] <= last / 8 + 4
            assert nets[name].cm_stages[0][1] <= cm_width / 8 + 4
            flops[name] = cost.gflops(net, (256, 256))
    assert max(flops.values()) / min(flops.values()) - 1 <= 0.05, flops


def test_width_rules():
    from src.model.net import apply_width_rule

    stages = [[8, 64, 256], [8, 0, 512], [8, 0, 512], [8, 0, 512], [8, 256, 512]]
    assert [s[1] for s in apply_width_rule(stages, "linear")] == [64, 112, 160, 208, 256]
    assert [s[1] for s in apply_width_rule(stages, "released")] == [64, 64, 64, 64, 256]
    assert apply_width_rule(stages, None) == stages
    with pytest.raises(ValueError, match="width_rule"):
        apply_width_rule(stages, "cubic")
    with initialize_config_dir(version_base="1.3", config_dir=str(ROOT / "conf")):
        net = compose("train", overrides=["model=table1_paf3x8_96-256_cm8x192",
                                          "model.net.width_rule=released"]).model.net
    with torch.device("meta"):
        assert [s.blocks[0].convs[0].out_channels for s in instantiate(net).paf_stages] == [96, 96, 256]


def test_report_puts_the_papers_table1_beside_the_measured(tmp_path, capsys):
    write_record(tmp_path, "0_row4", 100.0, model="table1_paf3x8_96-256_cm8x192",
                 metrics={"body": {"AP": 0.5, "AR": 0.6}})
    write_record(tmp_path, "1_row6", 90.0, model="matched/table1_paf5x8_64-256_cm5x256_as_x")
    write_record(tmp_path, "2_other", 80.0)
    sweep_report.main([str(tmp_path)])
    out = capsys.readouterr().out
    paper = out.split("Paper Table 1")[1]
    rows = [ln.split("|")[1:-1] for ln in paper.splitlines() if ln.startswith("| ") and "---" not in ln]
    assert [r[0].strip() for r in rows[1:]] == ["1_row6", "0_row4"]
    assert [c.strip() for c in rows[2][3:9]] == ["66.4", "70.9", "56.9", "61.9", "50.0", "60.0"]



@pytest.mark.slow  # two deep narrow networks for a few steps each, then the report
def test_table1_cpu_two_rows_come_back_as_a_complete_table(tmp_path):
    """+sweep=table1_cpu with two of its rows (the shallowest and the deepest PAF structure) and a cut budget:
    a run record per row with AP and AR for every part, the report's paper columns for both, the PNG."""
    shards, sweep = tmp_path / "shards", tmp_path / "sweep"
    subprocess.run([sys.executable, "-m", "sharding", f"out_dir={shards}", "synthetic.train_images=12",
                    "synthetic.val_images=4"], cwd=ROOT, check=True, capture_output=True, timeout=300)
    rows = "table1_cpu/matched/paf1x10_32_cm10x32,table1_cpu/matched/paf5x8_8-32_cm5x32"
    cmd = [sys.executable, "-m", "src.train", "-m", "+experiment=smoke", "+sweep=table1_cpu",
           f"hydra.sweeper.params.model='{rows}'", f"hydra.sweep.dir={sweep}", f"data.root={shards}",
           "logger=csv", "model.input_size=128", "data.crop=128", "data.batch_size=2", "data.num_workers=0",
           "data.val_num_workers=0", "data.val_batch_size=4", "trainer.max_steps=3",
           "trainer.val_check_interval=3", "model.schedule.milestones=[2]",
           "trainer.enable_model_summary=false", "~callbacks.progress",
           "callbacks.run_record.latency_size=[64,64]"]
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    records = sweep_report.load_records(sweep)
    assert sorted(r["model"] for r in records) == rows.split(",")
    for rec in records:
        assert rec["global_step"] == 3 and rec["gflops_480"] > 0 and rec["latency_ms"] > 0
        assert {"body", "foot", "face", "lefthand", "righthand", "wholebody"} <= set(rec["metrics"])
        assert all({"AP", "AR"} <= set(stats) for stats in rec["metrics"].values())
    report = subprocess.run([sys.executable, "-m", "src.sweep_report", str(sweep)], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert report.returncode == 0, report.stderr[-2000:]
    paper = report.stdout.split("Paper Table 1")[1]
    assert "| paf1x10_32_cm10x32 | 1s, 10b, 256w | 1s, 10b, 256w | 65.8 | 70.3 |" in paper
    assert "| paf5x8_8-32_cm5x32 | 5s, 8b, 64-256w | 1s, 5b, 256w | 65.5 | 70.1 |" in paper
    assert (sweep / "sweep_report.png").stat().st_size > 5000
