"""The GPU check in one command (``make gpu-check``): what to measure before spending GPU-days.

``python -m bench.gpu_check [device=cuda] [steps=300] ...`` (``key=value`` overrides of ``DEFAULTS``):

1. the CUDA-equals-CPU tests (targets, lazy decoder, packed targets, half-precision inference) via pytest;
2. ``deep_wholebody`` trained on synthetic 480x480 shards at batch 10, bf16, for ``steps`` steps: images/s,
   model FLOPs utilisation (3 x the forward GFLOPs of ``src.model.cost`` per image over the GPU's peak dense
   bf16 FLOP/s), peak GPU memory, and the data wait per step (time from one step's end to the next step's
   start, which is when the loader has not kept up) as a share of the step;
3. the same at ``big_batch`` for ``big_steps`` steps (a larger batch that fits);
4. runtime against people (``bench.runtime`` on the device at 480x480);
5. batch-1 latency at 480x480 of every model preset (the sweep's networks).

Everything runs from this repository alone: the shards are synthetic, every network starts from random
weights (``backbone_init=none``: the machine has no network). It ends with one JSON line. ``device=cpu``
with a small ``model``/``size`` runs the same path on a CPU (the tests do).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback
from omegaconf import OmegaConf

from bench.__main__ import machine
from src.model import cost

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
DEFAULTS = {"device": "cuda", "model": "deep_wholebody", "size": 480, "batch": 10, "steps": 300, "warmup": 30,
            "big_batch": 20, "big_steps": 60, "workers": 12, "precision": "bf16-mixed", "images": 1200,
            "tests": True, "runtime": True, "latency": True, "out_dir": "logs/gpu_check"}
CUDA_TESTS = ["tests/test_targets.py", "tests/test_decode.py", "tests/test_datamodule.py",
              "tests/test_inference.py"]
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0, "4090": 165.0}
"""Dense bf16 tensor-core peaks (vendor data sheets, no sparsity), matched against the device name."""


class StepTimer(Callback):
    """Wall time of every training step and the gap before it (the data wait), after ``warmup`` steps."""

    def __init__(self, warmup: int):
        self.warmup, self.steps, self.waits, self.last_end, self.start = warmup, [], [], None, None

    def _sync(self, pl_module) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        now = time.perf_counter()
        if self.last_end is not None and trainer.global_step >= self.warmup:
            self.waits.append(now - self.last_end)
        self.start = now

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._sync(pl_module)
        self.last_end = time.perf_counter()
        if trainer.global_step > self.warmup:
            self.steps.append(self.last_end - self.start)


def build_shards(out: Path, cfg: dict) -> None:
    """Synthetic whole-body shards at ``size`` (train and a small val split) by the real sharding CLI."""
    subprocess.run([sys.executable, "-m", "sharding", f"out_dir={out}", f"synthetic.size={cfg['size']}",
                    f"synthetic.train_images={cfg['images']}", "synthetic.val_images=20"],
                   cwd=ROOT, check=True, capture_output=True)


def train_throughput(shards: Path, run_dir: Path, cfg: dict, batch: int, steps: int) -> dict:
    """Train ``model`` for ``steps`` steps at ``batch`` and return images/s, MFU, memory and data wait."""
    import src.train  # noqa: F401  (sets the environment wandb and albumentations read)

    overrides = ["+experiment=deep_wholebody_synthetic", f"model={cfg['model']}",
                 f"model.input_size={cfg['size']}", "model.net.backbone_init=none", f"data.root={shards}",
                 f"data.batch_size={batch}", f"data.num_workers={cfg['workers']}",
                 f"data.batches_per_epoch={steps}", f"trainer.max_steps={steps}",
                 "trainer.limit_val_batches=0", f"trainer.val_check_interval={steps}", "logger=csv",
                 "~callbacks.progress", "~callbacks.best", f"run_dir={run_dir}",
                 f"trainer.precision={cfg['precision']}"]
    if cfg["device"] == "cpu":
        overrides += ["trainer.accelerator=cpu"]
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF)):
        train_cfg = compose("train", overrides=overrides)
    device = torch.device(cfg["device"])
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    timer = StepTimer(min(cfg["warmup"], steps // 2))
    model = instantiate(train_cfg.model, _recursive_=False)
    trainer = instantiate(train_cfg.trainer, callbacks=[timer], logger=False, enable_checkpointing=False)
    trainer.fit(model, datamodule=instantiate(train_cfg.data))
    step_s = sorted(timer.steps)[len(timer.steps) // 2] if timer.steps else float("nan")  # median
    wait_s = sorted(timer.waits)[len(timer.waits) // 2] if timer.waits else 0.0
    images_per_s = batch / (step_s + wait_s)
    gflops = cost.gflops(model.net, (cfg["size"], cfg["size"]))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else ""
    peak = next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)
    out = {"batch": batch, "steps": steps, "images_per_s": round(images_per_s, 1),
           "step_ms": round(1e3 * step_s, 2), "data_wait_ms": round(1e3 * wait_s, 2),
           "data_wait_share": round(wait_s / (step_s + wait_s), 4), "forward_gflops": round(gflops, 1),
           "mfu": round(3 * gflops * 1e9 * images_per_s / (peak * 1e12), 4) if peak else None}
    if device.type == "cuda":
        out["peak_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    return out


def preset_latency(cfg: dict) -> dict:
    """Batch-1 forward latency (ms) at ``size`` x ``size`` of every ``conf/model`` preset."""
    out = {}
    for preset in sorted(p.stem for p in (CONF / "model").glob("*.yaml") if not p.stem.startswith("_")):
        with initialize_config_dir(version_base="1.3", config_dir=str(CONF)):
            net_cfg = compose("export", overrides=[f"model={preset}"]).model.net
        net_cfg = OmegaConf.to_container(net_cfg, resolve=True)
        net_cfg["backbone_init"] = "none"
        net = instantiate(net_cfg)
        out[preset] = round(cost.latency_ms(net, (cfg["size"], cfg["size"]), cfg["device"], 3, 10), 2)
        del net
    return out


def run_tests() -> dict:
    """The CUDA-equals-CPU tests (they skip without a GPU): their pytest summary line."""
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *CUDA_TESTS,
                           "-k", "cuda or gpu or half"], cwd=ROOT, capture_output=True, text=True)
    return {"returncode": done.returncode, "summary": (done.stdout.strip().splitlines() or [""])[-1]}


def check(cfg: dict) -> dict:
    figures = {"machine": machine(), "settings": cfg}
    if cfg["tests"]:
        figures["cuda_tests"] = run_tests()
    with tempfile.TemporaryDirectory() as tmp:
        shards = Path(tmp) / "shards"
        start = time.perf_counter()
        build_shards(shards, cfg)
        figures["shards_s"] = round(time.perf_counter() - start, 1)
        figures["train"] = train_throughput(shards, Path(tmp) / "run", cfg, cfg["batch"], cfg["steps"])
        if cfg["big_batch"]:
            figures["train_big_batch"] = train_throughput(shards, Path(tmp) / "run_big", cfg,
                                                          cfg["big_batch"], cfg["big_steps"])
    if cfg["runtime"]:
        from bench import runtime

        size = f"[{cfg['size']},{cfg['size']}]"
        figures["runtime"] = runtime.run([f"device={cfg['device']}", f"image_size={size}",
                                          f"out_dir={cfg['out_dir']}/runtime"])
    if cfg["latency"]:
        figures["latency_ms_batch1"] = preset_latency(cfg)
    train = figures["train"]
    fast = train["images_per_s"] >= 400 or (train["mfu"] or 0) >= 0.45
    figures["goals"] = {"images_per_s>=400_or_mfu>=0.45": fast,
                        "data_wait_share<=0.05": train["data_wait_share"] <= 0.05}
    return figures


def main(argv: list[str]) -> None:
    cfg = dict(DEFAULTS)
    for arg in argv:
        key, _, value = arg.partition("=")
        if key not in DEFAULTS:
            sys.exit(f"error: unknown setting {key!r}; known: {sorted(DEFAULTS)}")
        cfg[key] = type(DEFAULTS[key])(value) if not isinstance(DEFAULTS[key], bool) else value == "true"
    if cfg["device"] == "cuda" and not torch.cuda.is_available():
        sys.exit("error: device=cuda but no CUDA device is visible (device=cpu runs the same path)")
    figures = check(cfg)
    out = Path(cfg["out_dir"])
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_check.json").write_text(json.dumps(figures, indent=1))
    print(json.dumps(figures))


if __name__ == "__main__":
    main(sys.argv[1:])
