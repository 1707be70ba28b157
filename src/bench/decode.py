"""Benchmark of src.decoder on ONE CPU thread: the maps of a 10-person 480x640 image (the synthetic world's
figures, rendered by src.targets) -> people.

``decode_ms_10_people``: peaks, PAF scoring, assembly and filtering (``Decoder.decode_resized``), the resize
excluded (``decode_cpu_ms_10_people``: the same in process CPU time, which other work on the machine
disturbs less); ``resize_ms``: the bicubic upsampling of the 439 maps from 60x80 to 480x640 beside it.
Each is the fastest of several runs (the least disturbed by other work on a shared machine).
``python -m src.bench.decode`` prints one JSON line; ``run()`` returns the dict.
"""

from __future__ import annotations

import json
import time

import torch

from src.bench.scenes import crowd
from src.decoder.decode import Decoder
from src.skeleton import BODY_135
from src.targets import Targets

PEOPLE, SIZE = 10, (480, 640)


def _best_ms(fn, repeats: int, clock=time.perf_counter) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = clock()
        fn()
        times.append(clock() - start)
    return 1e3 * min(times)


def run(repeats: int = 20) -> dict:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _, people = crowd(PEOPLE, SIZE, seed=0)
        k = BODY_135.num_keypoints
        maps, _ = Targets()(torch.from_numpy(people)[None], torch.ones(1, k, dtype=torch.bool), None, SIZE)
        maps = maps[0]
        decoder = Decoder()
        fine = decoder.resize(maps, SIZE)
        found = len(decoder.decode_resized(fine, maps[:k]))
        decode = lambda: decoder.decode_resized(fine, maps[:k])  # noqa: E731
        decode_ms = _best_ms(decode, repeats)
        decode_cpu_ms = _best_ms(decode, repeats, time.process_time)
        resize_ms = _best_ms(lambda: decoder.resize(maps, SIZE), max(3, repeats // 5))
    finally:
        torch.set_num_threads(threads)
    return {"decode_ms_10_people": round(decode_ms, 2), "decode_cpu_ms_10_people": round(decode_cpu_ms, 2),
            "resize_ms": round(resize_ms, 1), "decode_people_found": found}


if __name__ == "__main__":
    print(json.dumps(run()))
