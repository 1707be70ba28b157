"""Training end to end on real synthetic shards: configs, train(cfg), resume, faults, DDP (2 CPU ranks)."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException, InstantiationException, MissingConfigException
from omegaconf import OmegaConf

from src.core import checkpoint
from src.evaluate import evaluate_checkpoint
from src.train import train
from src.training.module import NonFiniteLossError

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))


def compose_train(*overrides: str):
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF)):
        return compose("train", overrides=list(overrides))


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    """A small synthetic world built by the real sharding CLI (once per module)."""
    out = tmp_path_factory.mktemp("shards")
    subprocess.run([sys.executable, "-m", "sharding", f"out_dir={out}", "synthetic.train_images=40",
                    "synthetic.val_images=30"], cwd=ROOT, check=True, capture_output=True)
    return out


def val_images(shards: Path) -> int:
    return len(json.loads((shards / "synth_wholebody" / "val" / "gt.json").read_text())["images"])


def tiny_cfg(shards: Path, run_dir: Path, *overrides: str, experiment: str = "smoke"):
    """The smoke experiment shrunk to seconds: 128x128 crops, batch 2, four steps, CSV logger only."""
    return compose_train(
        f"+experiment={experiment}", f"data.root={shards}", f"run_dir={run_dir}", "logger=csv",
        "model.input_size=128",
        "data.batch_size=2", "data.num_workers=0", "data.val_num_workers=0", "data.val_batch_size=4",
        "trainer.max_steps=4", "trainer.val_check_interval=4", "trainer.log_every_n_steps=1",
        "trainer.enable_model_summary=false", "callbacks.last.every_n_train_steps=2", "~callbacks.progress",
        *overrides)


def csv_steps(run_dir: Path, key: str = "train/loss") -> list[int]:
    with open(run_dir / "metrics.csv", newline="") as f:
        return [int(r["step"]) for r in csv.DictReader(f) if r.get(key)]


# -- configuration ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_and_instantiates_its_model(experiment):
    cfg = compose_train(f"+experiment={experiment}")
    assert cfg.name == experiment and cfg.data.crop == cfg.model.input_size
    OmegaConf.resolve(cfg)  # every interpolation resolves
    if experiment != "smoke":  # the big nets: size only
        with torch.device("meta"):
            from hydra.utils import instantiate
            instantiate(cfg.model.net)


def test_released_run_is_ddp_on_gpus_with_bf16():
    cfg = compose_train("+experiment=deep_wholebody", "trainer.devices=4")
    strategy = cfg.trainer.strategy
    assert strategy._target_.endswith("DDPStrategy") and "start_method" not in strategy  # plain ddp
    assert cfg.trainer.accelerator == "gpu" and cfg.trainer.devices == 4
    assert cfg.trainer.precision == "bf16-mixed" and cfg.data.batch_size == 10 and cfg.model.input_size == 480
    assert cfg.model.optimizer.lr == 3e-5 and cfg.trainer.max_steps == 1_000_000


@pytest.mark.parametrize("override, key", [
    (["+experiment=nonesuch"], "experiment/nonesuch"),
    (["model=nonesuch"], "model/nonesuch"),
    (["trainer.max_stepz=3"], "max_stepz"),
    (["model.optimizer.learning_rate=1"], "learning_rate"),
])
def test_unknown_names_and_bad_overrides_fail_naming_the_key(override, key):
    with pytest.raises((ConfigCompositionException, MissingConfigException)) as err:
        compose_train(*override)
    assert key in str(err.value) + str(err.value.__cause__)


@pytest.mark.parametrize("override, key", [
    ("model.optimizer.lr=-1", "model.optimizer.lr"),
    ("model.schedule.milestones=[5,2]", "model.schedule.milestones"),
    ("model.net.paf_stages=[[0,8,8]]", "[0, 8, 8]"),
    ("model.input_size=100", "model.input_size"),
    ("model.val_scales=[1.0,0]", "model.val_scales"),
])
def test_bad_values_fail_before_any_data_is_read(tmp_path, override, key):
    cfg = tiny_cfg(tmp_path / "no_shards_here", tmp_path / "run", override)
    with pytest.raises((ValueError, InstantiationException)) as err:  # no shards: a data read would raise
        # FileNotFoundError instead
        train(cfg)
    assert key in str(err.value)


# -- training -----------------------------------------------------------------------------------------------
def test_train_writes_checkpoints_metrics_pictures_and_resumes(shards, tmp_path):
    run = tmp_path / "run"
    cfg = tiny_cfg(shards, run)
    scales = list(cfg.model.val_scales)
    assert len(scales) > 1  # smoke validates at several scales: the evaluate check below covers averaging
    out = train(cfg)
    assert out["global_step"] == 4 and out["bad_steps"] == 0
    assert set(out["metrics"]) == {"body", "foot", "face", "lefthand", "righthand", "wholebody", "hand"}
    assert all(len(stats) == 10 for stats in out["metrics"].values())
    assert out["val_images"] == val_images(shards)  # every val image of synth_wholebody scored once
    assert json.loads((run / "last_metrics.json").read_text()) == out["metrics"]
    assert (run / "checkpoints" / "last.ckpt").is_file() and (run / "checkpoints" / "best.ckpt").is_file()
    assert (run / "loss_curve.png").stat().st_size > 0
    assert sorted(p.name for p in (run / "pictures").iterdir()) == ["step_0000004_maps.png",
                                                                      "step_0000004_overlay.png"]
    assert csv_steps(run) == [0, 1, 2, 3]
    # a real checkpoint of this project reads weights-only (no pickled classes): nothing to allow-list
    before = checkpoint.read(run / "checkpoints" / "last.ckpt")

    # python -m src.evaluate ckpt_path=... data=synthetic scales=...: same weights and scales, same scores
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF)):
        ev = compose("evaluate", overrides=[f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}",
                                            "data=synthetic", f"data.root={shards}", "data.val_num_workers=0",
                                            f"scales={scales}", f"out={tmp_path / 'ev.json'}"])
    assert evaluate_checkpoint(ev) == out["metrics"]
    assert json.loads((tmp_path / "ev.json").read_text()) == out["metrics"]

    # resume: continues at step 4 with the optimiser and schedule restored, and appends to the same CSV
    out = train(tiny_cfg(shards, run, "ckpt_path=last", "trainer.max_steps=6"))
    assert out["global_step"] == 6
    assert csv_steps(run) == [0, 1, 2, 3, 4, 5]
    after = checkpoint.read(run / "checkpoints" / "last.ckpt")  # resumed through Lightning, weights-only
    adam_before = before["optimizer_states"][0]["state"][0]["step"]
    assert after["optimizer_states"][0]["state"][0]["step"] == adam_before + 2
    assert after["lr_schedulers"][0]["last_epoch"] == before["lr_schedulers"][0]["last_epoch"] + 2


def test_missing_checkpoint_is_a_clear_error(shards, tmp_path):
    with pytest.raises(FileNotFoundError, match="last.ckpt"):
        train(tiny_cfg(shards, tmp_path / "fresh", "ckpt_path=last"))


class PoisonImages(L.Callback):
    """Turns the batch images into NaN from step ``start`` on (so the loss is non-finite)."""

    def __init__(self, start: int):
        self.start = start

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step >= self.start:
            batch["image"] = torch.full(batch["image"].shape, float("nan"))


def test_non_finite_losses_are_skipped_then_stop_the_run(shards, tmp_path):
    run = tmp_path / "run"
    cfg = tiny_cfg(shards, run, "trainer.max_steps=8", "model.max_bad_steps=3",
                   "+callbacks.poison._target_=tests.test_train.PoisonImages", "+callbacks.poison.start=2")
    with pytest.raises(NonFiniteLossError, match="3 non-finite losses in a row"):
        train(cfg)
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["bad_steps"] >= 1
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values())
    with open(run / "metrics.csv", newline="") as f:
        key = "train/nonfinite_steps"
        counted = [float(r[key]) for r in csv.DictReader(f) if r.get(key)]
    assert counted[-1] == 2  # logged each time; the third stops the run before logging


@pytest.mark.timeout(600)  # a collective-ordering bug shows up as a hang
def test_ddp_sim_two_ranks_score_each_val_image_once(shards, tmp_path):
    run = tmp_path / "run"
    out = train(tiny_cfg(shards, run, "trainer=ddp_sim", "trainer.max_steps=2",
                         "trainer.val_check_interval=2"))
    assert out["global_step"] == 2
    assert out["val_images"] == val_images(shards)
    assert set(json.loads((run / "last_metrics.json").read_text())) >= {"body", "wholebody"}


@pytest.mark.slow
def test_kill_9_then_resume_continues_from_the_checkpoint(shards, tmp_path):
    run = tmp_path / "run"
    args = [sys.executable, "-m", "src.train", "+experiment=smoke", f"data.root={shards}", f"run_dir={run}",
            "logger=csv", "model.input_size=128", "data.batch_size=2", "data.num_workers=0",
            "data.val_num_workers=0", "trainer.val_check_interval=1000",
            "callbacks.last.every_n_train_steps=2",
            "trainer.log_every_n_steps=1", "~callbacks.progress"]
    env = {**os.environ, "WANDB_MODE": "disabled"}
    proc = subprocess.Popen([*args, "trainer.max_steps=1000"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = run / "checkpoints" / "last.ckpt"
    deadline = time.time() + 300
    while time.time() < deadline and not (last.is_file() and _step(last) >= 4):
        time.sleep(1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    saved = _step(last)
    assert saved >= 4
    subprocess.run([*args, f"trainer.max_steps={saved + 2}", "trainer.val_check_interval=1000",
                    "ckpt_path=last"], cwd=ROOT, env=env, check=True, capture_output=True)
    assert _step(last) == saved + 2
    steps = csv_steps(run)
    assert steps == sorted(set(steps)) and steps[-1] == saved + 1  # appended, no step twice


def _step(path: Path) -> int:
    try:
        return int(torch.load(path, weights_only=False, map_location="cpu")["global_step"])
    except Exception:  # being written
        return -1


def test_any_loader_delivering_the_batch_contract_trains_the_module(tmp_path):
    """No datamodule: a plain DataLoader of finished batches (image, target, weight, skipped) is enough, so
    the module reads nothing but the batch."""
    from hydra.utils import instantiate

    from src.targets import Targets

    cfg = compose_train("model=tiny", "model.input_size=64")
    module = instantiate(cfg.model, _recursive_=False)
    gen = torch.Generator().manual_seed(0)
    kp = torch.zeros(2, 1, 135, 3)
    kp[..., :2] = 8 + 48 * torch.rand(2, 1, 135, 2, generator=gen)
    kp[..., 2] = 1
    target, weight = Targets()(kp, torch.ones(2, 135, dtype=torch.bool), None, (64, 64))
    batches = [{"image": torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8, generator=gen),
                "target": target, "weight": weight, "skipped": torch.tensor(i % 2)} for i in range(4)]
    loader = torch.utils.data.DataLoader(batches, batch_size=None)

    def loss() -> float:
        module.eval()
        with torch.no_grad():
            outs = module.net(module._input(batches[0]["image"]))
            return float(module.loss(*module.net.split(outs), target, weight)["total"])

    before = loss()
    trainer = L.Trainer(accelerator="cpu", max_steps=4, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(module, train_dataloaders=loader)
    assert trainer.global_step == 4 and trainer.datamodule is None
    assert module.skipped_samples == 2  # counted from the batches' own ``skipped``
    assert loss() < before


def test_each_val_source_is_scored_on_the_parts_it_labels(shards, tmp_path):
    """A whole-body, a face-only and a hand-only val set at once: each logs val/<source>/<part>/... for its
    own parts; the first is also the headline val/<part>/... that best.ckpt tracks."""
    run = tmp_path / "run"
    out = train(tiny_cfg(shards, run, "trainer.max_steps=2", "trainer.val_check_interval=2",
                         "model.val_scales=[1.0]", "+data.val.synth_face={urls:null,gt:null,policy:face}",
                         "+data.val.synth_hand={urls:null,gt:null,policy:hand}"))
    per_source = json.loads((run / "last_metrics_per_source.json").read_text())
    assert list(per_source) == ["synth_wholebody", "synth_face", "synth_hand"]
    assert per_source["synth_wholebody"] == out["metrics"]  # labels every part
    assert set(per_source["synth_face"]) == set(out["metrics"])  # synthetic val images label every part
    with open(run / "metrics.csv", newline="") as f:
        columns = set(next(csv.reader(f)))
    assert {"val/synth_face/face/AP", "val/synth_hand/lefthand/AP", "val/synth_wholebody/body/AP",
            "val/body/AP", "val/wholebody/AP"} <= columns
    assert (run / "checkpoints" / "best.ckpt").is_file()


def test_a_source_is_scored_on_the_parts_it_labels_only():
    from src.core.skeleton import BODY_135
    from src.evaluation.validation import _labels

    parts = ["body", "foot", "face", "lefthand", "righthand", "wholebody", "hand"]
    scored = lambda groups: [p for p in parts if _labels(BODY_135.labelled(groups), p)]  # noqa: E731
    assert scored(["face"]) == ["face"]  # nose and eyes derived from a face do not make a body set
    assert scored(["rhand"]) == ["righthand"]
    assert scored(["lhand", "rhand"]) == ["lefthand", "righthand", "hand"]
    assert scored(["body", "foot"]) == ["body", "foot"] and scored(["body", "mpii"]) == ["body"]
    assert scored(list(BODY_135.groups)) == parts


def test_body_foot_layout_trains_and_validates(shards, tmp_path):
    """+experiment=smoke_body_foot (25 points, 35 pairs, 95 channels) for a few steps: targets of the
    body-foot layout from the 135-point batches, the loss per group, validation through the decoder and the
    evaluator with body and foot AP."""
    run = tmp_path / "run"
    cfg = tiny_cfg(shards, run, "model.val_scales=[1.0]", "trainer.max_steps=2",
                   "trainer.val_check_interval=2", experiment="smoke_body_foot")
    assert cfg.layout.name == cfg.model.net.layout.name == cfg.targets.layout.name == "BODY_FOOT"
    out = train(cfg)
    assert out["global_step"] == 2 and out["bad_steps"] == 0
    assert all(len(out["metrics"][part]) == 10 for part in ("body", "foot"))
    with open(run / "metrics.csv", newline="") as f:
        columns = set(next(csv.reader(f)))
    assert {"train/loss/body", "train/loss/foot", "val/body/AP", "val/foot/AP", "val/AP"} <= columns
    assert "train/loss/face" not in columns


# -- logging ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("env, offline, mode", [
    (None, "true", "offline"), (None, "false", "online"),  # the config decides ...
    # ... unless WANDB_MODE is set
    ("offline", "false", "offline"), ("disabled", "false", "disabled"), ("online", "true", "online"),
])
def test_wandb_mode_follows_the_config_and_the_environment_wins(tmp_path, monkeypatch, env, offline, mode):
    from src.train import build_loggers

    if env is None:
        monkeypatch.delenv("WANDB_MODE", raising=False)
    else:
        monkeypatch.setenv("WANDB_MODE", env)
    cfg = compose_train("logger=default", f"logger.wandb.offline={offline}", f"run_dir={tmp_path}")
    wandb_logger = next(lg for lg in build_loggers(cfg) if type(lg).__name__ == "WandbLogger")
    assert wandb_logger._wandb_init["mode"] == mode  # what wandb.init will get; no run is created here
    assert wandb_logger._experiment is None


# -- scale-out: several nodes, signals ----------------------------------------------------------------------
def _cli(shards: Path, run: Path, *overrides: str) -> list[str]:
    """``python -m src.train`` as a user types it: the smoke experiment at 128 px, batch 2, CSV logger."""
    return [sys.executable, "-m", "src.train", "+experiment=smoke", f"data.root={shards}", f"run_dir={run}",
            "logger=csv", "model.input_size=128", "data.batch_size=2", "data.num_workers=0",
            "data.val_num_workers=0", "data.val_batch_size=4", "trainer.log_every_n_steps=1",
            "trainer.enable_model_summary=false", "~callbacks.progress", *overrides]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow  # ~100 s on 2 shared cores: make test-full
@pytest.mark.timeout(600)
def test_two_nodes_on_one_machine(shards, tmp_path):
    """Two processes as two nodes (NODE_RANK 0/1, MASTER_ADDR/PORT: Lightning's LightningEnvironment), gloo,
    one CPU device each: the same steps, disjoint samples, each val image scored once, one checkpoint."""
    port, probe = _free_port(), tmp_path / "probe"
    procs = []
    for node in (0, 1):
        env = {**os.environ, "WANDB_MODE": "disabled", "NODE_RANK": str(node), "MASTER_ADDR": "127.0.0.1",
               "MASTER_PORT": str(port)}
        for k in ("LOCAL_RANK", "RANK", "WORLD_SIZE"):
            env.pop(k, None)
        cmd = _cli(shards, tmp_path / f"node{node}", "trainer=ddp", "trainer.accelerator=cpu",
                   "trainer.precision=32-true", "trainer.devices=1", "trainer.num_nodes=2",
                   "trainer.max_steps=4", "trainer.val_check_interval=4",
                   "callbacks.last.every_n_train_steps=2",
                   "+callbacks.probe._target_=tests.run_probes.KeyProbe", f"+callbacks.probe.out={probe}")
        procs.append(subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    outs = []
    for p in procs:
        try:
            outs.append(p.communicate(timeout=420)[0])
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise
    assert [p.returncode for p in procs] == [0, 0], outs[0][-3000:] + outs[1][-3000:]
    ranks = [json.loads((probe / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [(r["node"], r["world"], r["env"]["RANK"], r["env"]["WORLD_SIZE"]) for r in ranks] == [
        (0, 2, "0", "2"), (1, 2, "1", "2")]
    assert [r["steps"] for r in ranks] == [4, 4] and [r["global_step"] for r in ranks] == [4, 4]
    keys = [set(r["keys"]) for r in ranks]
    assert keys[0] and keys[1] and not keys[0] & keys[1]  # no sample (so no shard key) read by both nodes
    assert [r["metrics"]["val/images"] for r in ranks] == [val_images(shards)] * 2  # scored once, same log
    scores = [{k: v for k, v in r["metrics"].items() if k.endswith(("/AP", "/AR", "/images"))}
              for r in ranks]
    assert scores[0] == scores[1] and len(scores[0]) == 30  # the same on every rank: val/ and val/<source>/
    assert _step(tmp_path / "node0" / "checkpoints" / "last.ckpt") == 4
    assert not list((tmp_path / "node1").rglob("*.ckpt"))  # rank 0 writes checkpoints, node 1 none


@pytest.mark.slow  # ~55 s: make test-full
@pytest.mark.timeout(400)
def test_sigusr1_saves_and_goes_on_sigterm_saves_and_exits(shards, tmp_path):
    run, probe = tmp_path / "run", tmp_path / "probe"
    proc = subprocess.Popen(_cli(shards, run, "trainer.max_steps=1000", "trainer.val_check_interval=1000",
                                 "callbacks.last.every_n_train_steps=1000",
                                 "+callbacks.probe._target_=tests.run_probes.KeyProbe",
                                 f"+callbacks.probe.out={probe}", "+callbacks.probe.every_step=true"),
                            cwd=ROOT, env={**os.environ, "WANDB_MODE": "disabled"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = run / "checkpoints" / "last.ckpt"

    def reached() -> int:
        try:
            return json.loads((probe / "rank0.json").read_text())["global_step"]
        except (OSError, ValueError):
            return -1

    def wait(cond, what: str) -> None:
        deadline = time.time() + 240
        while not cond():
            assert proc.poll() is None and time.time() < deadline, what
            time.sleep(0.2)

    try:
        wait(lambda: reached() >= 2, "no training steps")
        assert not last.exists()
        proc.send_signal(signal.SIGUSR1)
        wait(lambda: _step(last) >= 2, "no last.ckpt after SIGUSR1")
        usr1 = _step(last)
        wait(lambda: reached() >= usr1 + 2, "training stopped after SIGUSR1")  # it goes on
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert _step(last) == reached() > usr1  # the step it reached when SIGTERM arrived


# -- scale-out: shard URLs ----------------------------------------------------------------------------------
def test_short_run_reads_shards_through_pipe_and_http(shards, tmp_path):
    """Train shards of one source through ``pipe:cat``, of another and the val shards over http (a server
    thread on 127.0.0.1), with the quoting docs/data.md gives."""
    import functools
    import http.server
    import threading

    served: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            served.append(self.path)

    def pattern(source: str, split: str) -> str:
        tars = sorted((shards / source / split).glob("*.tar"))
        return f"{source}/{split}/{source}-{split}-{{000000..{len(tars) - 1:06d}}}.tar"

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             functools.partial(Handler, directory=str(shards)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        cfg = tiny_cfg(shards, tmp_path / "run", "trainer.max_steps=2", "trainer.val_check_interval=2",
                       "model.val_scales=[1.0]", "data.sources.synth_face.probability=0",
                       "data.sources.synth_wholebody.probability=0",
                       "data.sources.synth_hand.probability=0.5",
                       "data.sources.synth_body.probability=0.5",
                       f'data.sources.synth_body.urls="pipe:cat {shards}/{pattern("synth_body", "train")}"',
                       f'data.sources.synth_hand.urls="{base}/{pattern("synth_hand", "train")}"',
                       f'data.val.synth_wholebody.urls="{base}/{pattern("synth_wholebody", "val")}"',
                       f"data.val.synth_wholebody.gt={shards}/synth_wholebody/val/gt.json")
        assert cfg.data.sources.synth_body.urls.startswith("pipe:cat ")
        out = train(cfg)
    finally:
        server.shutdown()
        server.server_close()
    assert out["global_step"] == 2 and out["val_images"] == val_images(shards)
    assert any(p.startswith("/synth_hand/train/") for p in served), served
    assert any(p.startswith("/synth_wholebody/val/") for p in served)


# -- knobs --------------------------------------------------------------------------------------------------
def test_accumulation_and_compile_are_config_knobs_and_compile_keeps_checkpoint_keys():
    from hydra.utils import instantiate

    cfg = compose_train("+experiment=smoke", "trainer.accumulate_grad_batches=3", "model.compile=true",
                        "logger=csv", "~callbacks.progress")
    trainer = instantiate(cfg.trainer, logger=False)
    assert trainer.accumulate_grad_batches == 3
    module = instantiate(cfg.model, _recursive_=False)
    keys = set(module.state_dict())
    module.on_fit_start()  # wraps the network (torch.compile is lazy: nothing is compiled here)
    assert module._train_net is not None and set(module.state_dict()) == keys


def test_a_resumed_csv_log_keeps_only_the_steps_its_checkpoint_holds(tmp_path):
    """A checkpoint at global step 2 holds steps 0 and 1: the row of step 2 (logged after it, before the
    crash) goes, since the resumed run logs step 2 again."""
    from src.training.logs import ResumableCSVLogger

    (tmp_path / "metrics.csv").write_text("step,train/loss\n0,4.0\n1,3.0\n2,2.0\n3,1.0\n")
    logger = ResumableCSVLogger(str(tmp_path), resume_step=2)
    logger.experiment  # noqa: B018 - opening the log is what rewrites it
    assert csv_steps(tmp_path) == [0, 1]
