"""Benchmark of src.decoder on ONE CPU thread: the maps of a 10-person 480x640 image (the synthetic world's
figures, rendered by src.targets) -> people.

``decode_ms_10_people``: peaks, PAF scoring, assembly and filtering (``Decoder.decode_resized``), the resize
excluded (``decode_cpu_ms_10_people``: the same in process CPU time, which other work on the machine
disturbs less); ``resize_ms``: the bicubic upsampling of the 439 maps from 60x80 to 480x640 beside it.
``decode_total_ms_10_people``: the whole ``Decoder()(maps, size)`` with the default ``resize: lazy`` (the
bicubic values computed only where read; resize included). ``decode_peak_mb_10_people``: the resident-memory
high-water mark that one such decode adds, measured in a fresh subprocess (``VmHWM`` reset through
``/proc/self/clear_refs`` just before the call; counts numpy and torch allocations alike);
``decode_full_peak_mb_10_people`` the same for ``resize: full``.
Each time is the fastest of several runs (the least disturbed by other work on a shared machine).
``python -m bench.decode`` prints one JSON line; ``run()`` returns the dict.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import torch

from bench.scenes import crowd
from src.core.skeleton import BODY_135
from src.decoder.decode import Decoder
from src.targets import Targets

PEOPLE, SIZE = 10, (480, 640)


def best_ms(fn, repeats: int, clock=time.perf_counter) -> float:
    """The fastest of ``repeats`` calls of ``fn`` (after one warm-up), in ms of ``clock``."""
    fn()
    times = []
    for _ in range(repeats):
        start = clock()
        fn()
        times.append(clock() - start)
    return 1e3 * min(times)


def _maps() -> torch.Tensor:
    _, people = crowd(PEOPLE, SIZE, seed=0)
    k = BODY_135.num_keypoints
    maps, _ = Targets()(torch.from_numpy(people)[None], torch.ones(1, k, dtype=torch.bool), None, SIZE)
    return maps[0]


def _rss_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field))


def peak_mb(resize: str) -> float | None:
    """In this process (call it fresh): MB the resident high-water mark rises during one decode."""
    torch.set_num_threads(1)
    maps, decoder = _maps(), Decoder(resize=resize)
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")                                # reset VmHWM to the current RSS
    except OSError:
        return None
    before = _rss_kb("VmRSS:")
    decoder(maps, SIZE)
    return round((_rss_kb("VmHWM:") - before) / 1024, 1)


def _peak_in_subprocess(resize: str) -> float | None:
    code = f"import json; from bench.decode import peak_mb; print(json.dumps(peak_mb({resize!r})))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(repeats: int = 20) -> dict:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        k = BODY_135.num_keypoints
        maps = _maps()
        decoder = Decoder(resize="full")
        fine = decoder.resize(maps, SIZE)
        found = len(decoder.decode_resized(fine, maps[:k]))
        decode = lambda: decoder.decode_resized(fine, maps[:k])  # noqa: E731
        decode_ms = best_ms(decode, repeats)
        decode_cpu_ms = best_ms(decode, repeats, time.process_time)
        resize_ms = best_ms(lambda: decoder.resize(maps, SIZE), max(3, repeats // 5))
        lazy = Decoder(resize="lazy")
        lazy_found = len(lazy(maps, SIZE))
        total_ms = best_ms(lambda: lazy(maps, SIZE), repeats)
        total_cpu_ms = best_ms(lambda: lazy(maps, SIZE), repeats, time.process_time)
    finally:
        torch.set_num_threads(threads)
    return {"decode_ms_10_people": round(decode_ms, 2), "decode_cpu_ms_10_people": round(decode_cpu_ms, 2),
            "resize_ms": round(resize_ms, 1), "decode_people_found": found,
            "decode_total_ms_10_people": round(total_ms, 2),
            "decode_total_cpu_ms_10_people": round(total_cpu_ms, 2),
            "decode_total_people_found": lazy_found,
            "decode_peak_mb_10_people": _peak_in_subprocess("lazy"),
            "decode_full_peak_mb_10_people": _peak_in_subprocess("full")}


if __name__ == "__main__":
    print(json.dumps(run()))
