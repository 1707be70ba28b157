"""The oracle round trip: GT keypoints -> targets -> decoder -> COCO-WholeBody metrics.

``python -m src.oracle ann=COCO_WHOLEBODY.json images=DIR out=METRICS.json [height=H] [stride=S]``

Every image's annotated people are rendered into the 439 target maps exactly as training sees them (resized so
the image is ``height`` pixels tall, native size when absent, padded at the bottom/right to a multiple of the
stride), decoded with the real decoder, mapped back to the original pixels by ``src.inference`` and scored
with the project's evaluator. What it loses is what the targets + decoder pair cannot represent: the ceiling
of any network trained on them.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import hydra
import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from sharding.keypoints import from_wholebody133
from src.core.skeleton import BODY_135
from src.decoder.decode import Decoder
from src.decoder.writers import records
from src.evaluation.evaluator import evaluate_wholebody, format_table, load_gt
from src.inference import Inference
from src.targets import Targets

ALL_GROUPS = BODY_135.labelled(list(BODY_135.groups))
"""A COCO-WholeBody source labels every group (its absent MPII points carry code 4 per person)."""


def _people(anns: list[dict], scale: float) -> np.ndarray:
    """Non-crowd annotations of one image -> ``[P, 135, 3]`` in input pixels with visibility codes."""
    people = [from_wholebody133(a) for a in anns if not a.get("iscrowd", 0)]
    if not people:
        return np.zeros((0, BODY_135.num_keypoints, 3), np.float32)
    kp = np.stack(people)
    kp[..., :2] *= scale
    return kp


def round_trip(ann: str | Path, images: str | Path, height: int | None = None, decoder: Decoder | None = None,
               targets: Targets | None = None) -> tuple[dict, list[dict]]:
    """Render, decode and score every image of ``ann`` -> (metrics, result records)."""
    decoder = decoder or Decoder()
    targets = targets or Targets(stride=decoder.stride)
    if targets.stride != decoder.stride:
        raise ValueError(f"oracle: targets stride {targets.stride} != decoder stride {decoder.stride}")
    inference = Inference(None, decoder)  # the GT maps stand in for a network's
    gt = load_gt(ann)
    by_image: dict[int, list[dict]] = {}
    for a in gt["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    found = []
    for img in gt["images"]:
        path = Path(images) / img["file_name"]
        if not path.is_file():
            raise FileNotFoundError(f"oracle: image {img['file_name']!r} (id {img['id']}) is not in {images}")
        h0, w0 = int(img["height"]), int(img["width"])
        scale = 1.0 if height is None else float(height) / h0
        s = targets.stride
        size = (-(-round(h0 * scale) // s) * s, -(-round(w0 * scale) // s) * s)
        kp = torch.from_numpy(_people(by_image.get(img["id"], []), scale))[None]
        labelled = torch.from_numpy(ALL_GROUPS)[None]
        maps, _ = targets(kp, labelled, None, size)
        back = torch.tensor([[scale, scale]])
        people = inference.decode([maps], size, back, torch.zeros_like(back))[0]
        found += records(people, img["id"])
    return evaluate_wholebody(gt, found), found


@hydra.main(version_base="1.3", config_path="../conf", config_name="oracle")
def main(cfg: DictConfig) -> None:
    if not cfg.ann or not cfg.images:
        raise SystemExit("oracle: give ann=COCO_WHOLEBODY.json and images=DIR")
    stride = {} if cfg.stride is None else {"stride": cfg.stride}
    decoder = instantiate(cfg.decoder, **stride)
    targets = instantiate(cfg.targets, **stride)
    start = time.perf_counter()
    metrics, records = round_trip(cfg.ann, cfg.images, cfg.height, decoder, targets)
    where = f"height {cfg.height}" if cfg.height else "native size"
    print(f"oracle round trip ({where}, stride {decoder.stride}, {len(records)} people decoded, "
          f"{time.perf_counter() - start:.1f} s)")
    print(format_table(metrics))
    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(metrics, indent=1))


if __name__ == "__main__":
    main()
