"""Benchmark of the COCO-WholeBody evaluator at COCO val size: 2,000 images, 10,400 people, seeded synthetic
GT (every part labelled, some points unlabelled, a few crowd boxes) and noisy predictions (points moved by a
part-scaled Gaussian, some people missed, some false detections), all six parts scored.

``eval_s_2000_images``: ``evaluate_wholebody`` as the project runs it (faster-coco-eval);
``eval_s_2000_images_pycocotools``: the same on pycocotools' COCOeval (the reference engine);
``eval_s_2000_images_xtcocotools``: the official protocol on xtcocotools (mmpose's six ``keypoints_<part>``
runs, ``use_area``), when it is installed (else null). Wall seconds of one run each, GT dict and prediction
list in memory. ``python -m bench.evaluate`` prints one JSON line; ``run()`` returns the dict.
"""

from __future__ import annotations

import contextlib
import io
import json
import time

import numpy as np

from src.decoder.writers import FIELDS
from src.evaluation.evaluator import SIGMAS, STATS, evaluate_wholebody

IMAGES, PEOPLE = 2000, 10_400


def synthetic(images: int = IMAGES, people: int = PEOPLE, seed: int = 0) -> tuple[dict, list[dict]]:
    """(GT dict, prediction list). People are spread over the images (1-10 each) to ``people`` in total."""
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(people - images, np.full(images, 1 / images)) + 1
    gt = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "person"}]}
    preds = []
    n_points = sum(FIELDS.values())
    sigmas = SIGMAS["wholebody"]
    for image_id, n in enumerate(counts, 1):
        gt["images"].append({"id": image_id, "width": 640, "height": 480,
                             "file_name": f"{image_id:012d}.jpg"})
        for _ in range(n):
            h = rng.uniform(40, 400)
            x0, y0 = rng.uniform(0, 600), rng.uniform(0, 440)
            pts = np.stack([x0 + rng.uniform(0, h / 2, n_points), y0 + rng.uniform(0, h, n_points),
                            np.where(rng.random(n_points) < 0.8, 2.0, 0.0)], 1)
            pts[pts[:, 2] == 0, :2] = 0
            area = float(h * h / 2 * rng.uniform(0.5, 1.0))
            ann = {"id": len(gt["annotations"]) + 1, "image_id": image_id, "category_id": 1,
                   "iscrowd": int(rng.random() < 0.01), "area": area, "bbox": [x0, y0, h / 2, h]}
            start = 0
            for field, k in FIELDS.items():
                ann[field] = pts[start:start + k].reshape(-1).round(2).tolist()
                start += k
            gt["annotations"].append(ann)
            if rng.random() < 0.1:  # missed
                continue
            spread = 2 * sigmas[:, None] * np.sqrt(area) * rng.uniform(0.1, 1.0)
            noise = rng.normal(0, 1, (n_points, 2)) * spread
            det = np.concatenate([pts[:, :2] + noise, rng.uniform(0.05, 1, (n_points, 1))], 1)
            det[pts[:, 2] == 0] = 0
            preds.append(_record(image_id, det, rng))
        for _ in range(rng.poisson(0.5)):  # false detections
            det = np.concatenate([rng.uniform(0, 480, (n_points, 2)), rng.uniform(0.05, 1, (n_points, 1))], 1)
            preds.append(_record(image_id, det, rng))
    return gt, preds


def _record(image_id: int, det: np.ndarray, rng) -> dict:
    rec = {"image_id": image_id, "category_id": 1}
    start = 0
    for field, k in FIELDS.items():
        rec[field] = det[start:start + k].reshape(-1).round(2).tolist()
        start += k
    score = float(rng.uniform(0.1, 1))
    rec.update(score=score, foot_score=score, face_score=score, lefthand_score=score, righthand_score=score,
               wholebody_score=score)
    return rec


def xtcocotools_eval(gt: dict, preds: list[dict]) -> dict[str, list[float]]:
    """The reference protocol as mmpose runs it (six ``keypoints_<part>`` evaluations, ``use_area``)."""
    from xtcocotools.coco import COCO
    from xtcocotools.cocoeval import COCOeval

    out = {}
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = gt
        coco.createIndex()
        dets = coco.loadRes([{**p, "score": p["score"]} for p in preds])
        for part in ("body", "foot", "face", "lefthand", "righthand", "wholebody"):
            ev = COCOeval(coco, dets, f"keypoints_{part}", SIGMAS[part], use_area=True)
            ev.params.useSegm = None
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
            out[part] = [float(v) for v in ev.stats]
    return out


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run(images: int = IMAGES, people: int = PEOPLE) -> dict:
    gt, preds = synthetic(images, people)
    out: dict = {}
    figures = {"eval_s_2000_images": _seconds(lambda: out.update(faster=evaluate_wholebody(gt, preds))),
               "eval_s_2000_images_pycocotools": _seconds(
                   lambda: out.update(ref=evaluate_wholebody(gt, preds, engine="pycocotools")))}
    figures["eval_max_diff_pycocotools"] = max(abs(out["faster"][p][k] - out["ref"][p][k])
                                               for p in out["ref"] for k in out["ref"][p])
    try:
        import xtcocotools.cocoeval  # noqa: F401
    except (ImportError, ValueError):  # absent, or built against another numpy ABI
        figures["eval_s_2000_images_xtcocotools"] = None
    else:
        figures["eval_s_2000_images_xtcocotools"] = _seconds(
            lambda: out.update(xt=xtcocotools_eval(gt, preds)))
        figures["eval_max_diff_xtcocotools"] = max(abs(out["faster"][p][k] - v)
                                                   for p, vals in out["xt"].items()
                                                   for k, v in zip(STATS, vals, strict=True))
    return {k: (round(v, 2) if k.startswith("eval_s") and v is not None else v) for k, v in figures.items()}


if __name__ == "__main__":
    print(json.dumps(run()))
