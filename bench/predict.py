"""Benchmark of ``python -m src.predict`` per image on ONE CPU thread: the ``tiny`` network on a 640x480 photo
(a synthetic 10-person crowd), model load excluded, split into network / decode / writing.

The weights are random, so the network's own maps hold nobody; the decode step therefore runs on the
ground-truth maps of the same image (what a trained network would hand it), through the same
``Inference.decode`` that ``predict`` calls. Writing is the OpenPose JSON and the overlay PNG of the image.
``predict_ms_per_image`` is their sum; each part is the fastest of several runs.
``python -m bench.predict`` prints one JSON line; ``run()`` returns the dict.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from bench.decode import best_ms
from bench.scenes import crowd
from src.core.geometry import resize_for_eval
from src.core.skeleton import BODY_135
from src.decoder.decode import Decoder
from src.inference import Inference
from src.model.fold import FoldedPoseNet
from src.predict import write_image_outputs
from src.targets import Targets

PEOPLE, SIZE = 10, (480, 640)
CONF = Path(__file__).resolve().parents[1] / "conf"


def run(repeats: int = 5) -> dict:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with initialize_config_dir(version_base="1.3", config_dir=str(CONF)):
            net_cfg = compose("export", overrides=["model=tiny"]).model.net
        net = instantiate(net_cfg)
        image, people = crowd(PEOPLE, SIZE, seed=0)
        k = BODY_135.num_keypoints
        gt, _ = Targets()(torch.from_numpy(people)[None], torch.ones(1, k, dtype=torch.bool), None, SIZE)
        inference = Inference(FoldedPoseNet(net), Decoder())  # as load_model makes it
        resized = resize_for_eval(image, SIZE[0])
        scale, offset = torch.from_numpy(resized.scale)[None], torch.from_numpy(resized.offset)[None]

        def network():
            with torch.inference_mode():
                return inference.maps(torch.from_numpy(resize_for_eval(image, SIZE[0]).image)
                                      .permute(2, 0, 1)[None])

        def decode():
            return inference.decode([gt], SIZE, scale, offset)[0]

        found = decode()
        with tempfile.TemporaryDirectory() as tmp:
            def write():
                write_image_outputs(Path(tmp), "photo", image, found, overlay=True)

            times = {"network": best_ms(network, repeats), "decode": best_ms(decode, repeats),
                     "write": best_ms(write, repeats)}
    finally:
        torch.set_num_threads(threads)
    return {"predict_ms_per_image": round(sum(times.values()), 1),
            **{f"predict_{name}_ms": round(ms, 1) for name, ms in times.items()},
            "predict_people_found": len(found)}


if __name__ == "__main__":
    print(json.dumps(run()))
