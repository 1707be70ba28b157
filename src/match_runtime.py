"""Scale a network's widths until it runs as fast as a target network (the paper tuned Table 1 so by hand).

``python -m src.match_runtime model=ablation_paf5 target=deep_wholebody [size=[480,480]] [device=cpu]``

Every stage's ``width`` and ``tail`` of ``model`` is multiplied by a factor f and rounded to a multiple of
``multiple`` (8; 4 for the narrow CPU presets, where a step of 8 moves the cost by up to 20%), at least that;
the backbone and adapter stay. f is bracketed (halved or doubled from 1) and then bisected until
the measured batch-1 latency at ``size`` is within ``tolerance`` (5%) of the target's; if rounding leaves it
short, single stages are then widened or narrowed by ``multiple`` (see :func:`match`). At most ``max_steps``
measurements; the closest configuration is kept. ``metric=gflops`` matches FLOPs instead of time
(device-independent and deterministic). Writes the model preset with the new stages to
``out_dir/<model>_as_<target>.yaml`` (default ``conf/model/matched/``, usable as
``model=matched/<model>_as_<target>``; it inherits everything else from ``model``) and prints the search.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import hydra
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from src.model import cost
from src.model.net import apply_width_rule

log = logging.getLogger(__name__)


def scale_widths(net_cfg: dict, factor: float, multiple: int = 8) -> dict:
    """A copy of the network config with every stage's width and tail x ``factor``, multiples of
    ``multiple``."""
    def rounded(v: int) -> int:
        return max(multiple, int(v * factor / multiple + 0.5) * multiple)  # half up, not round-half-even

    out = dict(net_cfg)
    for key in ("paf_stages", "cm_stages"):
        out[key] = [[int(blocks), rounded(width), rounded(tail)] for blocks, width, tail in net_cfg[key]]
    return out


def measure(net_cfg: dict, metric: str, size: tuple[int, int], device: str, repeats: int) -> float:
    """Latency in ms (``metric=latency``) or GFLOPs (``metric=gflops``) of the network at ``size``."""
    with torch.device("meta") if metric == "gflops" else torch.device("cpu"):
        net = instantiate({**{k: v for k, v in net_cfg.items() if k != "backbone_weights"},
                           "backbone_init": "none"})  # sizes and timing only: no weights, no download
    if metric == "gflops":
        return cost.gflops(net, size)
    return cost.latency_ms(net, size, device, warmup=1, repeats=repeats)


def _nudge(cfg: dict, key: str, index: int, step: int) -> dict:
    """A copy of ``cfg`` with one stage's width moved by ``step`` (at least ``|step|``)."""
    out = {**cfg, key: [list(stage) for stage in cfg[key]]}
    out[key][index][1] = max(abs(step), out[key][index][1] + step)
    return out


def match(net_cfg: dict, goal: float, metric: str, size: tuple[int, int], device: str = "cpu",
          tolerance: float = 0.05, max_steps: int = 24, repeats: int = 3, multiple: int = 8
          ) -> tuple[dict, float, list[dict]]:
    """(config closest to ``goal``, its common factor, the search log). Assumes the cost grows with width.

    First a common factor for all stages (bracket, then bisection); when rounding to multiples leaves that
    short of the tolerance (a step of 8 moves a narrow network's cost by ~10%), single stages' widths
    are moved by ``multiple`` at a time, keeping whichever move comes closest, while that helps."""
    tried: dict[str, dict] = {}

    def probe(cfg: dict, f: float) -> dict:
        key = json.dumps([cfg["paf_stages"], cfg["cm_stages"]])
        if key not in tried:
            value = measure(cfg, metric, size, device, repeats)
            tried[key] = {"factor": f, "value": value, "ratio": value / goal, "config": cfg}
            log.info("f=%.3f %s=%.1f (%.3f x target) %s", f, metric, value, value / goal, key)
        return tried[key]

    def value(f: float) -> float:
        return probe(scale_widths(net_cfg, f, multiple), f)["value"]

    def best() -> dict:
        return min(tried.values(), key=lambda t: abs(t["ratio"] - 1))

    def done() -> bool:
        return abs(best()["ratio"] - 1) <= tolerance or len(tried) >= max_steps

    lo = hi = 1.0
    if value(1.0) > goal:
        while not done() and value(lo) > goal and lo > 1 / 64:
            hi, lo = lo, lo / 2
    else:
        while not done() and value(hi) < goal and hi < 16:
            lo, hi = hi, hi * 2
    while not done() and hi - lo > 1e-3:
        mid = (lo + hi) / 2
        if value(mid) > goal:
            hi = mid
        else:
            lo = mid
    while not done():
        current = best()
        step = multiple if current["ratio"] < 1 else -multiple
        for key in ("paf_stages", "cm_stages"):
            for i in range(len(current["config"][key])):
                if not done():
                    probe(_nudge(current["config"], key, i, step), current["factor"])
        if best() is current:
            break
    chosen = best()
    return chosen["config"], chosen["factor"], sorted(tried.values(), key=lambda t: t["factor"])


@hydra.main(version_base="1.3", config_path="../conf", config_name="match_runtime")
def main(cfg: DictConfig) -> None:
    size = (int(cfg.size[0]), int(cfg.size[1]))
    model_name = hydra.core.hydra_config.HydraConfig.get().runtime.choices.model
    target = hydra.compose("match_runtime", overrides=[f"model={cfg.target}"])
    net_cfg = OmegaConf.to_container(cfg.model.net, resolve=True)
    rule = net_cfg.get("width_rule")  # Table 1 presets: the rule sets the middle widths once, before scaling
    net_cfg["paf_stages"], net_cfg["width_rule"] = apply_width_rule(net_cfg["paf_stages"], rule), None
    goal = measure(OmegaConf.to_container(target.model.net, resolve=True), cfg.metric, size, cfg.device,
                   int(cfg.repeats))
    log.info("target %s: %s=%.1f at %dx%d on %s", cfg.target, cfg.metric, goal, *size, cfg.device)
    matched, factor, search = match(net_cfg, goal, cfg.metric, size, cfg.device, float(cfg.tolerance),
                                    int(cfg.max_steps), int(cfg.repeats), int(cfg.multiple))
    best = next(t for t in search if t["config"] is matched)
    # the preset it came from, with only the stages replaced (read as model=matched/<name>)
    preset = (f"defaults:\n  - /model/{model_name}@_here_\n  - _self_\nnet:\n"
              f"  paf_stages: {matched['paf_stages']}\n  cm_stages: {matched['cm_stages']}\n")
    if rule is not None:  # the widths above are final: the source's width rule is not applied again
        preset += f"  width_rule: null   # {model_name}'s width_rule={rule} already applied\n"
    name = cfg.get("out_name") or f"{model_name.replace('/', '_')}_as_{str(cfg.target).replace('/', '_')}"
    out = Path(cfg.out_dir) / f"{name}.yaml"
    out.parent.mkdir(parents=True, exist_ok=True)
    status = "within" if abs(best["ratio"] - 1) <= cfg.tolerance else "NOT within"
    header = (f"# Generated by python -m src.match_runtime model={model_name} target={cfg.target} "
              f"metric={cfg.metric} size=[{size[0]},{size[1]}] device={cfg.device}\n"
              f"# stage widths x {factor:.3f} (multiples of {cfg.multiple}): "
              f"{cfg.metric} {best['value']:.1f} vs target {goal:.1f} "
              f"({best['ratio']:.3f}x, {status} +-{100 * cfg.tolerance:g}%)\n")
    out.write_text(header + preset)
    print(f"{model_name} -> {out}: factor {factor:.3f}, {cfg.metric} {best['value']:.1f} vs {goal:.1f} "
          f"({best['ratio']:.3f}x, {status} tolerance)")
    print(json.dumps({"model": model_name, "target": str(cfg.target), "metric": cfg.metric, "goal": goal,
                      "factor": factor, "value": best["value"], "ratio": best["ratio"], "out": str(out),
                      "search": [{k: t[k] for k in ("factor", "value", "ratio")} for t in search]}))


if __name__ == "__main__":
    main()
