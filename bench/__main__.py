"""`make bench`: run every area's benchmark and print one final JSON line of figures.

Each ``bench/<area>.py`` exposes ``run() -> dict``; they run one after another in this process so the
figures come from the same machine state. The machine (CPU model, cores, torch version) is part of the line.
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import sys

import torch

AREAS = ["targets", "decode", "predict", "sharding", "loader", "evaluate"]


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def main(areas: list[str]) -> None:
    figures: dict = {"machine": machine()}
    for area in areas:
        print(f"== bench {area}", file=sys.stderr, flush=True)
        figures.update(importlib.import_module(f"bench.{area}").run())
    print(json.dumps(figures))


if __name__ == "__main__":
    main(sys.argv[1:] or AREAS)
