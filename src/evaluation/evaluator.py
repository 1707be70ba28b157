"""COCO-WholeBody keypoint evaluation (AP/AR per part), on faster-coco-eval's COCOeval (C++, Apache-2.0) or
plain pycocotools (``engine="pycocotools"``, the reference the tests compare the default against).

The benchmark's reference is xtcocotools, which evaluates each part with its own ``iouType``. pycocotools
only knows one keypoint set per annotation, so each part gets its own pair of COCO objects whose
``keypoints`` hold just that part's points; pycocotools then does the matching and accumulation unchanged.
Protocol facts (shared/docs/coco_wholebody.md §A.3–A.4), all reproduced here:

- six runs (body, foot, face, lefthand, righthand, wholebody), each with its own sigmas, maxDets 20;
- OKS scale = the person's ``area`` for every part (not the part box);
- a GT is ignored for a part when it is crowd or has no point with ``v > 0`` there (float ``v`` allowed);
- a detection is dropped for a part when none of its points there has ``v > 0``;
- detections are ranked by ``<part>_score`` (``wholebody_score``, ...), falling back to ``score``;
- a detection's own area (which decides whether an unmatched detection counts in the M/L ranges) is the
  box of its 17 body points, for every part, as the reference's result loader computes it;
- ``hand`` = mean of lefthand and righthand, per stat.

A GT file without any whole-body field (plain COCO 17-point) is scored on ``body`` only.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

STATS = ("AP", "AP .5", "AP .75", "AP (M)", "AP (L)", "AR", "AR .5", "AR .75", "AR (M)", "AR (L)")
FIELDS = {"keypoints": 17, "foot_kpts": 6, "face_kpts": 68, "lefthand_kpts": 21, "righthand_kpts": 21}
"""COCO-WholeBody keypoint field -> number of points, in the 133-point concatenation order."""

PART_FIELDS: dict[str, tuple[str, ...]] = {
    "body": ("keypoints",),
    "foot": ("foot_kpts",),
    "face": ("face_kpts",),
    "lefthand": ("lefthand_kpts",),
    "righthand": ("righthand_kpts",),
    "wholebody": tuple(FIELDS),
}
SCORE_KEYS = {"body": "score", "foot": "foot_score", "face": "face_score", "lefthand": "lefthand_score",
              "righthand": "righthand_score", "wholebody": "wholebody_score"}

# Official OKS sigmas (coco_wholebody.md §A.3).
_BODY_SIGMAS = [0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072, 0.062, 0.062, 0.107, 0.107,
                0.087, 0.087, 0.089, 0.089]
_FOOT_SIGMAS = [0.068, 0.066, 0.066, 0.092, 0.094, 0.094]
_FACE_SIGMAS = [0.042, 0.043, 0.044, 0.043, 0.040, 0.035, 0.031, 0.025, 0.020, 0.023, 0.029, 0.032, 0.037,
                0.038, 0.043, 0.041, 0.045, 0.013, 0.012, 0.011, 0.011, 0.012, 0.012, 0.011, 0.011, 0.013,
                0.015, 0.009, 0.007, 0.007, 0.007, 0.012, 0.009, 0.008, 0.016, 0.010, 0.017, 0.011, 0.009,
                0.011, 0.009, 0.007, 0.013, 0.008, 0.011, 0.012, 0.010, 0.034, 0.008, 0.008, 0.009, 0.008,
                0.008, 0.007, 0.010, 0.008, 0.009, 0.009, 0.009, 0.007, 0.007, 0.008, 0.011, 0.008, 0.008,
                0.008, 0.010, 0.008]
_HAND_SIGMAS = [0.029, 0.022, 0.035, 0.037, 0.047, 0.026, 0.025, 0.024, 0.035, 0.018, 0.024, 0.022, 0.026,
                0.017, 0.021, 0.021, 0.032, 0.020, 0.019, 0.022, 0.031]
SIGMAS: dict[str, np.ndarray] = {
    "body": np.array(_BODY_SIGMAS),
    "foot": np.array(_FOOT_SIGMAS),
    "face": np.array(_FACE_SIGMAS),
    "lefthand": np.array(_HAND_SIGMAS),
    "righthand": np.array(_HAND_SIGMAS),
    "wholebody": np.array(_BODY_SIGMAS + _FOOT_SIGMAS + _FACE_SIGMAS + _HAND_SIGMAS + _HAND_SIGMAS),
}
MAX_DETS = 20
ENGINES = ("faster", "pycocotools")
"""``faster``: faster-coco-eval's ``COCOeval_faster`` with a vectorised OKS (default; equal to 1e-6);
``pycocotools``: pycocotools' ``COCOeval`` (the reference)."""


class EvalInputError(ValueError):
    """A GT or prediction record the evaluator cannot score; the message names the record and field."""


# -- loading and checking ----------------------------------------------------------------------------------
def _load_json(path: str | Path, what: str):
    try:
        with open(path) as f:
            return json.load(f)
    except OSError as e:
        raise EvalInputError(f"{what} file {str(path)!r}: cannot read ({e.strerror})") from e
    except json.JSONDecodeError as e:
        raise EvalInputError(f"{what} file {str(path)!r} is not valid JSON: {e}") from e


def load_predictions(path: str | Path) -> list[dict]:
    """A COCO(-WholeBody) result file: a JSON list of person records."""
    preds = _load_json(path, "prediction")
    if not isinstance(preds, list):
        raise EvalInputError(f"prediction file {str(path)!r} must hold a JSON list of records, "
                             f"got a JSON {type(preds).__name__}")
    return preds


def _check_points(rec: dict, field: str, where: str) -> None:
    """``rec[field]``, when present, is a flat list of ``FIELDS[field] * 3`` finite numbers."""
    if field not in rec:
        return
    pts = rec[field]
    n = FIELDS[field] * 3
    if not isinstance(pts, list) or len(pts) != n:
        got = f"length {len(pts)}" if isinstance(pts, list) else type(pts).__name__
        raise EvalInputError(f"{where}, field {field!r}: expected a list of {n} numbers "
                             f"({FIELDS[field]} points x 3), got {got}")
    try:
        arr = np.asarray(pts, np.float64)
        bad = np.flatnonzero(~np.isfinite(arr))
    except (TypeError, ValueError):
        bad = [next(i for i, x in enumerate(pts) if not isinstance(x, (int, float)))]
    if len(bad):
        i = int(bad[0])
        raise EvalInputError(f"{where}, field {field!r}[{i}] (point {i // 3}, {'xyv'[i % 3]}): "
                             f"expected a finite number, got {pts[i]!r}")


def _check_number(rec: dict, key: str, where: str) -> None:
    x = rec[key]
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
        raise EvalInputError(f"{where}, field {key!r}: expected a finite number, got {x!r}")


def check_predictions(preds: list, image_ids: set) -> None:
    """Raise :class:`EvalInputError` on the first record the evaluator cannot score."""
    if not isinstance(preds, list):
        raise EvalInputError(f"predictions must be a list of records, got {type(preds).__name__}")
    for i, rec in enumerate(preds):
        where = f"prediction record {i}"
        if not isinstance(rec, dict):
            raise EvalInputError(f"{where}: expected a JSON object, got {type(rec).__name__}")
        for key in ("image_id", "keypoints", "score"):
            if key not in rec:
                raise EvalInputError(f"{where}: required field {key!r} is missing")
        if rec["image_id"] not in image_ids:
            raise EvalInputError(f"{where}, field 'image_id': {rec['image_id']!r} is not an image of the GT")
        for field in FIELDS:
            _check_points(rec, field, where)
        for key in set(SCORE_KEYS.values()) & set(rec):
            _check_number(rec, key, where)


def load_gt(gt: dict | str | Path) -> dict:
    """A COCO(-WholeBody) keypoint GT, from a dict or a path, checked for what the evaluator reads."""
    if not isinstance(gt, dict):
        gt = _load_json(gt, "GT")
        if not isinstance(gt, dict):
            raise EvalInputError(f"GT must be a COCO JSON object, got a JSON {type(gt).__name__}")
    for key in ("images", "annotations", "categories"):
        if key not in gt:
            raise EvalInputError(f"GT: required field {key!r} is missing")
    for i, img in enumerate(gt["images"]):
        if "id" not in img:
            raise EvalInputError(f"GT images[{i}]: required field 'id' is missing")
    for i, ann in enumerate(gt["annotations"]):
        where = f"GT annotations[{i}]"
        for key in ("image_id", "category_id", "keypoints", "area", "bbox"):
            if key not in ann:
                raise EvalInputError(f"{where}: required field {key!r} is missing")
        for field in FIELDS:
            _check_points(ann, field, where)
        _check_number(ann, "area", where)
    return gt


# -- one part ----------------------------------------------------------------------------------------------
def _points(rec: dict, part: str) -> np.ndarray:
    """Flat ``[x, y, v] * n`` of ``part``; an absent field counts as unlabelled (zeros)."""
    return np.concatenate([np.asarray(rec.get(f, [0.0] * (3 * FIELDS[f])), np.float64).reshape(-1)
                           for f in PART_FIELDS[part]])


def _all_points(recs: list[dict]) -> np.ndarray:
    """``[N, 399]``: every record's 133 ``(x, y, v)`` in :data:`FIELDS` order (an absent field: zeros)."""
    out = np.zeros((len(recs), 3 * sum(FIELDS.values())))
    start = 0
    for field, k in FIELDS.items():
        rows = [i for i, r in enumerate(recs) if field in r]
        if rows:
            values = np.asarray([recs[i][field] for i in rows], np.float64)
            out[rows, start:start + 3 * k] = values.reshape(len(rows), 3 * k)
        start += 3 * k
    return out


def _part_columns(part: str) -> np.ndarray:
    offsets, start = {}, 0
    for field, k in FIELDS.items():
        offsets[field] = np.arange(start, start + 3 * k)
        start += 3 * k
    return np.concatenate([offsets[f] for f in PART_FIELDS[part]])


def _coco(gt: dict, anns: list[dict], engine: str = "pycocotools"):
    dataset = {"images": gt["images"], "categories": gt["categories"], "annotations": anns}
    if engine == "faster":
        from faster_coco_eval import COCO as FasterCOCO

        return FasterCOCO(dataset)
    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _part_gt(gt: dict, part: str, points: np.ndarray | None = None) -> list[dict]:
    pts = (_all_points(gt["annotations"]) if points is None else points)[:, _part_columns(part)]
    counts = np.count_nonzero(pts[:, 2::3] > 0, axis=1).tolist()
    anns = []
    for i, (ann, kps, n) in enumerate(zip(gt["annotations"], pts, counts, strict=True)):  # kps: array rows
        anns.append({
            "id": i + 1,  # own ids: pycocotools treats id 0 as "unmatched"
            "image_id": ann["image_id"], "category_id": ann["category_id"],
            "iscrowd": int(bool(ann.get("iscrowd", 0))), "area": float(ann["area"]), "bbox": ann["bbox"],
            "keypoints": kps, "num_keypoints": n,
        })
    return anns


def _part_dt(preds: list[dict], part: str, category_id: int, points: np.ndarray | None = None) -> list[dict]:
    points = _all_points(preds) if points is None else points
    pts = points[:, _part_columns(part)]
    keep = np.flatnonzero(np.any(pts[:, 2::3] > 0, axis=1))
    body = points[keep][:, _part_columns("body")]
    x, y = body[:, 0::3], body[:, 1::3]
    x0, y0 = x.min(1), y.min(1)
    w, h = x.max(1) - x0, y.max(1) - y0
    anns = []
    for j, i in enumerate(keep.tolist()):
        rec = preds[i]
        anns.append({
            "id": i + 1, "image_id": rec["image_id"], "category_id": rec.get("category_id", category_id),
            "keypoints": pts[i], "score": float(rec.get(SCORE_KEYS[part], rec["score"])),
            "area": float(w[j] * h[j]), "bbox": [float(x0[j]), float(y0[j]), float(w[j]), float(h[j])],
        })
    return anns


def _evaluate_part(gt: dict, preds: list[dict], part: str, engine: str = "faster",
                   points: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, float]:
    category_id = gt["categories"][0]["id"] if gt["categories"] else 1
    gt_points, dt_points = points or (None, None)
    coco_gt = _coco(gt, _part_gt(gt, part, gt_points), engine)
    coco_dt = _coco(gt, _part_dt(preds, part, category_id, dt_points), engine)
    with contextlib.redirect_stdout(io.StringIO()):
        if engine == "faster":
            ev = _FasterOks(coco_gt, coco_dt, "keypoints", kpt_oks_sigmas=list(SIGMAS[part]),
                            print_function=lambda *args, **kwargs: None)
        else:
            ev = COCOeval(coco_gt, coco_dt, "keypoints")
            ev.params.kpt_oks_sigmas = SIGMAS[part]
        ev.params.maxDets = [MAX_DETS]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {name: float(value) for name, value in zip(STATS, ev.stats[:len(STATS)], strict=True)}


def _faster_oks_class():
    from faster_coco_eval import COCOeval_faster

    class FasterOks(COCOeval_faster):
        """``computeOks`` over all GT of an image at once (faster-coco-eval's loops over them in Python)."""

        def computeOks(self, imgId, catId):  # noqa: N802 (the library's name)
            p = self.params
            gts = self.gt_dataset.get(imgId, catId)
            dts = self.dt_dataset.get(imgId, catId)
            inds = np.argsort([-d["score"] for d in dts], kind="mergesort")
            dts = [dts[i] for i in inds][: p.maxDets[-1]]
            if len(gts) == 0 or len(dts) == 0:
                return []
            var = (np.asarray(p.kpt_oks_sigmas, np.float64) * 2) ** 2
            d = np.stack([dt["keypoints"] for dt in dts])  # rows of float64 arrays (see _part_gt)
            g = np.stack([gt["keypoints"] for gt in gts])
            area = np.asarray([gt["area"] for gt in gts], np.float64)[None, :, None] + np.spacing(1)
            xd, yd = d[:, None, 0::3], d[:, None, 1::3]  # [D, 1, K]
            vg = g[:, 2::3] > 0  # [G, K]
            k1 = vg.sum(1)
            dx, dy = xd - g[None, :, 0::3], yd - g[None, :, 1::3]
            for j in np.flatnonzero(k1 == 0):  # no labelled point: distance to the doubled box
                x, y, w, h = gts[j]["bbox"]
                dx[:, j] = np.maximum(0, x - w - xd[:, 0]) + np.maximum(0, xd[:, 0] - (x + 2 * w))
                dy[:, j] = np.maximum(0, y - h - yd[:, 0]) + np.maximum(0, yd[:, 0] - (y + 2 * h))
            e = np.exp(-((dx ** 2 + dy ** 2) / var / area / 2))
            mask = np.where(k1[:, None] > 0, vg, True)[None]
            return (e * mask).sum(2) / mask.sum(2)

    return FasterOks


class _Lazy:
    cls = None


def _FasterOks(*args, **kwargs):  # noqa: N802 (a class, built on first use: faster-coco-eval imported lazily)
    if _Lazy.cls is None:
        _Lazy.cls = _faster_oks_class()
    return _Lazy.cls(*args, **kwargs)


def _mean_hand(left: dict[str, float], right: dict[str, float]) -> dict[str, float]:
    """Per stat mean of the two hands; a hand with no GT in that range (-1) is left out of the mean."""
    out = {}
    for k in STATS:
        vals = [v for v in (left[k], right[k]) if v >= 0]
        out[k] = float(np.mean(vals)) if vals else -1.0
    return out


def is_wholebody(gt: dict) -> bool:
    """Whether any GT annotation carries a whole-body field (else: plain COCO, body only)."""
    return any(f in ann for ann in gt["annotations"] for f in FIELDS if f != "keypoints")


def evaluate_wholebody(gt: dict | str | Path, preds: list[dict], engine: str = "faster"
                       ) -> dict[str, dict[str, float]]:
    """AP/AR of ``preds`` against ``gt``: ``{part: {stat: value}}`` with the parts body, foot, face, lefthand,
    righthand, wholebody, hand (only ``body`` for a plain COCO GT) and the 10 :data:`STATS`. ``engine``: one
    of :data:`ENGINES`."""
    if engine not in ENGINES:
        raise ValueError(f"engine={engine!r}: expected one of {ENGINES}")
    gt = load_gt(gt)
    check_predictions(preds, {img["id"] for img in gt["images"]})
    parts = list(PART_FIELDS) if is_wholebody(gt) else ["body"]
    points = (_all_points(gt["annotations"]), _all_points(preds))
    metrics = {part: _evaluate_part(gt, preds, part, engine, points) for part in parts}
    if "lefthand" in metrics:
        metrics["hand"] = _mean_hand(metrics["lefthand"], metrics["righthand"])
    return metrics


def format_table(metrics: dict[str, dict[str, float]]) -> str:
    """A fixed-width text table: one row per part, one column per stat."""
    head = f"{'part':<10}" + "".join(f"{s:>8}" for s in STATS)
    rows = [f"{part:<10}" + "".join(f"{m[s]:>8.3f}" for s in STATS) for part, m in metrics.items()]
    return "\n".join([head, "-" * len(head), *rows])
