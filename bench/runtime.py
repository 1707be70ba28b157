"""Runtime against the number of people (the paper's Fig. 4): one whole-body network vs a per-person cascade.

``python -m bench.runtime [device=cuda] [image_size=[480,480]] ...`` (``make bench-runtime``), config
``conf/bench_runtime.yaml``. For each crowd size n (synthetic images from :mod:`bench.scenes`):

- **single**: the whole-body network's forward pass on the image, then the decoder. The weights are random, so
  the network's own output holds nobody; the decoder therefore runs on the ground-truth maps of the same image
  (rendered by :class:`src.targets.Targets`), which is what a trained network would hand it.
- **cascade** (OpenPose ``--face --hand``, :mod:`bench.cascade`): a BODY_25-like body network (25
  keypoints, 34 pairs), the decoder on the body-only ground-truth maps, then one face crop and two hand crops
  per decoded person, each through its own crop network, one after another.

Each time is the minimum over ``repeats`` runs (``cascade_repeats`` for the cascade), interleaved over the
crowd sizes after one warm-up pass of everything: the minimum is the estimator least disturbed by other
processes on a shared machine. Writes ``runtime.md`` (the table), ``runtime.png`` (the plot) and
``runtime.json`` into ``out_dir`` and ends with one JSON line holding ``single_ratio_20_1`` and
``cascade_ratio_20_1`` (time at the largest crowd / time at one person).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import hydra
import matplotlib
import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from bench.__main__ import machine
from bench.cascade import Cascade, CropNet
from bench.scenes import crowd
from src.core.geometry import normalise
from src.core.skeleton import BODY_135
from src.decoder.decode import Decoder
from src.model import cost
from src.targets import Targets

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

log = logging.getLogger(__name__)

BODY_GROUPS = ("body", "mpii", "foot")
FACE_POINTS, HAND_POINTS = 70, 21


def _gt_maps(targets: Targets, kp: np.ndarray, groups, size, device) -> torch.Tensor:
    """The ``[439, h, w]`` ground-truth maps of one image with ``groups`` labelled (all when None)."""
    labelled = (np.ones(BODY_135.num_keypoints, bool) if groups is None
                else BODY_135.labelled(groups))
    target, _ = targets(torch.from_numpy(kp)[None], torch.from_numpy(labelled)[None], None, size)
    return target[0].to(device)


def _to_input(image: np.ndarray, device: torch.device) -> torch.Tensor:
    return normalise(torch.from_numpy(image).to(device).permute(2, 0, 1)[None])


def measure(cfg: DictConfig) -> dict:
    """Time both pipelines at every crowd size; returns the rows and the ratios."""
    torch.set_num_threads(int(cfg.threads))
    device = torch.device(cfg.device)
    size = (int(cfg.image_size[0]), int(cfg.image_size[1]))
    single = instantiate(cfg.single.net).eval().to(device)
    body = instantiate(cfg.body.net).eval().to(device)
    face = CropNet(FACE_POINTS, OmegaConf.to_container(cfg.crop_stages)).eval().to(device)
    hand = CropNet(HAND_POINTS, OmegaConf.to_container(cfg.crop_stages)).eval().to(device)
    decoder, targets = Decoder(), Targets()

    def decode_body(maps):
        return [p.keypoints for p in decoder(maps, size)]

    cascade = Cascade(body, face, hand, decode_body, int(cfg.crop_size), device)
    nets = {"single": single, "body": body, "face": face, "hand": hand}
    info = {name: {"params_m": round(cost.parameters_m(net), 2),
                   "gflops": round(cost.gflops(net, (int(cfg.crop_size),) * 2 if name in ("face", "hand")
                                               else size), 2)} for name, net in nets.items()}

    scenes = {}
    for n in cfg.people:
        image, kp = crowd(int(n), size, seed=int(cfg.seed))
        scenes[int(n)] = (image, _to_input(image, device), _gt_maps(targets, kp, None, size, device),
                          _gt_maps(targets, kp, BODY_GROUPS, size, device))

    def run_single(n):
        _, x, maps, _ = scenes[n]
        with torch.inference_mode():
            single(x)
            return len(decoder(maps, size))

    def run_cascade(n):
        image, _, _, body_maps = scenes[n]
        return cascade(image, body_maps)

    first = min(scenes)
    run_single(first), run_cascade(first)  # warm-up: allocators, kernels, the decoder's first call
    steps = {"single_ms": run_single, "cascade_ms": run_cascade,
             "single_net_ms": lambda n: single(scenes[n][1]),
             "single_decode_ms": lambda n: decoder(scenes[n][2], size)}
    times = {(n, key): [] for n in scenes for key in steps}
    repeats = {key: int(cfg.cascade_repeats if key == "cascade_ms" else cfg.repeats) for key in steps}
    for r in range(max(repeats.values())):  # interleaved: a change in background load hits every crowd size
        for n in sorted(scenes):
            for key, step in steps.items():
                if r >= repeats[key]:
                    continue
                with torch.inference_mode():
                    times[n, key].append(cost.time_call(lambda n=n, step=step: step(n), device, 0, 1))
    rows = []
    for n in sorted(scenes):
        row = {"people": n, **{key: min(times[n, key]) for key in steps}, "single_found": run_single(n),
               **run_cascade(n)}
        log.info("n=%d single %.0f ms (net %.0f, decode %.0f; %d found), cascade %.0f ms (%d faces, "
                 "%d hands)", n, row["single_ms"], row["single_net_ms"], row["single_decode_ms"],
                 row["single_found"], row["cascade_ms"], row["faces"], row["hands"])
        rows.append(row)
    lo, hi = rows[0], rows[-1]
    return {"rows": rows, "networks": info, "device": str(device), "threads": int(cfg.threads),
            "machine": machine(),
            "image_size": list(size), "crop_size": int(cfg.crop_size),
            "single_ratio": hi["single_ms"] / lo["single_ms"],
            "cascade_ratio": hi["cascade_ms"] / lo["cascade_ms"],
            "ratio_people": [lo["people"], hi["people"]]}


def table(result: dict) -> str:
    lines = ["| people | single (ms) | net | decoder | found | cascade (ms) | faces | hands | ratio |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['people']} | {r['single_ms']:.0f} | {r['single_net_ms']:.0f} | "
                     f"{r['single_decode_ms']:.0f} | {r['single_found']} | {r['cascade_ms']:.0f} | "
                     f"{r['faces']} | {r['hands']} | {r['cascade_ms'] / r['single_ms']:.1f} |")
    return "\n".join(lines)


def plot(result: dict, out: Path) -> None:
    people = [r["people"] for r in result["rows"]]
    rows = result["rows"]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(people, [r["single_ms"] / 1e3 for r in rows], "o-", label="single network + decoder")
    ax.plot(people, [r["cascade_ms"] / 1e3 for r in rows], "s-", label="cascade: body + face + 2 hands")
    h, w = result["image_size"]
    ax.set(xlabel="people in the image", ylabel="time per image (s)", xticks=people,
           title=f"Runtime vs people ({result['device']}, {h}x{w})")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def summary(result: dict) -> dict:
    lo, hi = result["ratio_people"]
    return {f"single_ratio_{hi}_{lo}": round(result["single_ratio"], 3),
            f"cascade_ratio_{hi}_{lo}": round(result["cascade_ratio"], 3),
            f"runtime_single_ms_{lo}": round(result["rows"][0]["single_ms"], 1),
            f"runtime_single_ms_{hi}": round(result["rows"][-1]["single_ms"], 1),
            f"runtime_cascade_ms_{lo}": round(result["rows"][0]["cascade_ms"], 1),
            f"runtime_cascade_ms_{hi}": round(result["rows"][-1]["cascade_ms"], 1),
            "runtime_device": result["device"], "runtime_image_size": result["image_size"]}


def bench(cfg: DictConfig) -> dict:
    """Measure, write table/plot/JSON into ``cfg.out_dir``, return the summary figures."""
    result = measure(cfg)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    text = table(result)
    (out / "runtime.md").write_text(text + "\n")
    (out / "runtime.json").write_text(json.dumps(result, indent=1))
    plot(result, out / "runtime.png")
    print(text, file=sys.stderr)
    print(f"networks: {json.dumps(result['networks'])}; plot: {out / 'runtime.png'}", file=sys.stderr)
    return summary(result)


def run(overrides: list[str] | None = None) -> dict:
    """``bench`` aggregator entry point."""
    with hydra.initialize(version_base="1.3", config_path="../conf"):
        cfg = hydra.compose("bench_runtime", overrides=overrides or [])
    return bench(cfg)


@hydra.main(version_base="1.3", config_path="../conf", config_name="bench_runtime")
def main(cfg: DictConfig) -> None:
    print(json.dumps(bench(cfg)))


if __name__ == "__main__":
    main()
