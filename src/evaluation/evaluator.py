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

Any other keypoint layout (a :class:`~src.core.skeleton.Layout` with ``oks_sigmas``: CrowdPose, AP-10K, ...)
is scored by :func:`evaluate_keypoints` with the plain COCO keypoint protocol, per part of ``layout.parts``;
:func:`evaluate` picks one of the two from the layout.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import warnings
from pathlib import Path

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from src.core.skeleton import Layout
from src.decoder.writers import FIELDS, SCORE_KEYS

STATS = ("AP", "AP .5", "AP .75", "AP (M)", "AP (L)", "AR", "AR .5", "AR .75", "AR (M)", "AR (L)")

PART_FIELDS: dict[str, tuple[str, ...]] = {
    "body": ("keypoints",),
    "foot": ("foot_kpts",),
    "face": ("face_kpts",),
    "lefthand": ("lefthand_kpts",),
    "righthand": ("righthand_kpts",),
    "wholebody": tuple(FIELDS),
}

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


def _check_points(rec: dict, field: str, where: str, k: int | None = None, layout: str | None = None) -> None:
    """``rec[field]``, when present, is a flat list of ``k * 3`` finite numbers (``k``: ``FIELDS[field]``
    unless given; ``layout``: the layout's name, for the message)."""
    if field not in rec:
        return
    pts = rec[field]
    k = FIELDS[field] if k is None else k
    n = k * 3
    if not isinstance(pts, list) or len(pts) != n:
        got = f"length {len(pts)}" if isinstance(pts, list) else type(pts).__name__
        of = "" if layout is None else f" of layout {layout!r}"
        raise EvalInputError(f"{where}, field {field!r}: expected a list of {n} numbers "
                             f"({k} points x 3{of}), got {got}")
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
    _check_prediction_records(preds, image_ids, FIELDS, set(SCORE_KEYS.values()))


def _check_prediction_records(preds: list, image_ids: set, fields: dict[str, int], score_keys: set[str],
                              layout: str | None = None) -> None:
    """Each record: a dict with ``image_id`` (an image of the GT), ``keypoints`` and ``score``; each field
    of ``fields`` present is ``3 * fields[field]`` finite numbers; each key of ``score_keys`` present is a
    finite number. ``layout``: the layout's name, for the messages."""
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
        for field, k in fields.items():
            _check_points(rec, field, where, k, layout)
        for key in sorted(score_keys & set(rec)):
            _check_number(rec, key, where)


def load_gt(gt: dict | str | Path) -> dict:
    """A COCO(-WholeBody) keypoint GT, from a dict or a path, checked for what the evaluator reads."""
    gt = _load_gt_top(gt)
    for i, ann in enumerate(gt["annotations"]):
        where = f"GT annotations[{i}]"
        for key in ("image_id", "category_id", "keypoints", "area", "bbox"):
            if key not in ann:
                raise EvalInputError(f"{where}: required field {key!r} is missing")
        for field in FIELDS:
            _check_points(ann, field, where)
        _check_number(ann, "area", where)
    return gt


def _load_gt_top(gt: dict | str | Path) -> dict:
    """A COCO GT from a dict or a path: an object with ``images`` (each with an ``id``), ``annotations`` and
    ``categories``; the annotations are not checked here."""
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


def _gt_records(anns: list[dict], pts: np.ndarray, counts: list | None = None,
                category_id: int | None = None) -> list[dict]:
    """The GT of one part as pycocotools reads it: ``pts`` ``[N, 3k]`` holds each annotation's points of the
    part. ``counts``: each one's ``num_keypoints`` (a GT counts when not crowd and this is not 0); default:
    its labelled points there (``v > 0``). ``category_id``: every GT's category, else its own."""
    if counts is None:
        counts = np.count_nonzero(pts[:, 2::3] > 0, axis=1).tolist()
    out = []
    for i, (ann, kps, n) in enumerate(zip(anns, pts, counts, strict=True)):  # kps: array rows
        out.append({
            "id": i + 1,  # own ids: pycocotools treats id 0 as "unmatched"
            "image_id": ann["image_id"],
            "category_id": ann["category_id"] if category_id is None else category_id,
            "iscrowd": int(bool(ann.get("iscrowd", 0))), "area": float(ann["area"]), "bbox": ann["bbox"],
            "keypoints": kps, "num_keypoints": n,
        })
    return out


def _dt_records(preds: list[dict], pts: np.ndarray, box: np.ndarray, score_key: str, category_id: int,
                one_category: bool = False, keep_all: bool = False) -> list[dict]:
    """The detections of one part as pycocotools' result loader leaves them: ``pts`` ``[N, 3k]`` holds each
    record's points of the part, ``box`` ``[N, 3m]`` the points whose box is its area (which decides whether
    an unmatched detection counts in the M/L ranges). A record without a point of confidence > 0 in the part
    is dropped (unless ``keep_all``); ranked by ``rec[score_key]``, falling back to ``score``. Category: the
    record's own (``category_id`` when it has none), or ``category_id`` for all with ``one_category``."""
    keep = np.arange(len(preds)) if keep_all else np.flatnonzero(np.any(pts[:, 2::3] > 0, axis=1))
    box = box[keep]
    x, y = box[:, 0::3], box[:, 1::3]
    x0, y0 = x.min(1), y.min(1)
    w, h = x.max(1) - x0, y.max(1) - y0
    out = []
    for j, i in enumerate(keep.tolist()):
        rec = preds[i]
        out.append({
            "id": i + 1, "image_id": rec["image_id"],
            "category_id": category_id if one_category else rec.get("category_id", category_id),
            "keypoints": pts[i], "score": float(rec.get(score_key, rec["score"])),
            "area": float(w[j] * h[j]), "bbox": [float(x0[j]), float(y0[j]), float(w[j]), float(h[j])],
        })
    return out


def _part_gt(gt: dict, part: str, points: np.ndarray | None = None) -> list[dict]:
    pts = (_all_points(gt["annotations"]) if points is None else points)[:, _part_columns(part)]
    return _gt_records(gt["annotations"], pts)


def _part_dt(preds: list[dict], part: str, category_id: int, points: np.ndarray | None = None) -> list[dict]:
    points = _all_points(preds) if points is None else points
    return _dt_records(preds, points[:, _part_columns(part)], points[:, _part_columns("body")],
                       SCORE_KEYS[part], category_id)


def _evaluate_part(gt: dict, preds: list[dict], part: str, engine: str = "faster",
                   points: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, float]:
    category_id = gt["categories"][0]["id"] if gt["categories"] else 1
    gt_points, dt_points = points or (None, None)
    return _cocoeval(gt, _part_gt(gt, part, gt_points), _part_dt(preds, part, category_id, dt_points),
                     SIGMAS[part], engine)


def _cocoeval(gt: dict, gt_anns: list[dict], dt_anns: list[dict], sigmas: np.ndarray, engine: str
              ) -> dict[str, float]:
    """The 10 :data:`STATS` of COCO's keypoint evaluation (maxDets 20) of ``dt_anns`` against ``gt_anns`` on
    the images and categories of ``gt``, with OKS ``sigmas`` (one per point of the annotations)."""
    coco_gt = _coco(gt, gt_anns, engine)
    coco_dt = _coco(gt, dt_anns, engine)
    with contextlib.redirect_stdout(io.StringIO()):
        if engine == "faster":
            ev = _FasterOks(coco_gt, coco_dt, "keypoints", kpt_oks_sigmas=list(sigmas),
                            print_function=lambda *args, **kwargs: None)
        else:
            ev = COCOeval(coco_gt, coco_dt, "keypoints")
            ev.params.kpt_oks_sigmas = sigmas
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


def _check_engine(engine: str) -> None:
    if engine not in ENGINES:
        raise ValueError(f"engine={engine!r}: expected one of {ENGINES}")


def evaluate_wholebody(gt: dict | str | Path, preds: list[dict], engine: str = "faster"
                       ) -> dict[str, dict[str, float]]:
    """AP/AR of ``preds`` against ``gt``: ``{part: {stat: value}}`` with the parts body, foot, face, lefthand,
    righthand, wholebody, hand (only ``body`` for a plain COCO GT) and the 10 :data:`STATS`. ``engine``: one
    of :data:`ENGINES`."""
    _check_engine(engine)
    gt = load_gt(gt)
    check_predictions(preds, {img["id"] for img in gt["images"]})
    parts = list(PART_FIELDS) if is_wholebody(gt) else ["body"]
    points = (_all_points(gt["annotations"]), _all_points(preds))
    metrics = {part: _evaluate_part(gt, preds, part, engine, points) for part in parts}
    if "lefthand" in metrics:
        metrics["hand"] = _mean_hand(metrics["lefthand"], metrics["righthand"])
    return metrics


# -- any other layout: the plain COCO keypoint protocol ------------------------------------------------------
ONE_CATEGORY = 1
"""The category id every GT and prediction is scored under by :func:`evaluate_keypoints`."""


def _check_layout(layout: Layout) -> None:
    if layout.oks_sigmas is None:
        raise ValueError(f"layout {layout.name!r} has no oks_sigmas (the COCO OKS sigma per keypoint): it is "
                         f"scored by evaluate_wholebody (the BODY_135 family, COCO-WholeBody's own sigmas) "
                         f"- call evaluate(), which picks it, or give the layout oks_sigmas")
    for part, idx in layout.parts.items():
        if not idx:
            raise ValueError(f"layout {layout.name!r}: part {part!r} holds no keypoint")


def load_layout_gt(gt: dict | str | Path, layout: Layout) -> dict:
    """A COCO keypoint GT of ``layout`` (a dict or a path), checked for what :func:`evaluate_keypoints` reads:
    each annotation's ``keypoints`` are ``3 K`` finite numbers in the layout's order, ``area`` (the OKS
    scale) a finite number, ``bbox`` 4 finite numbers, ``num_keypoints`` (optional) a finite number. A file
    without ``area`` (CrowdPose's, for one) is scored with the box's ``w * h``, as its shards' gt.json is, and
    a warning says so."""
    gt = _load_gt_top(gt)
    k = layout.num_keypoints
    boxed = [a for a in gt["annotations"] if isinstance(a, dict) and "area" not in a and "bbox" in a]
    if boxed:
        warnings.warn(f"GT: {len(boxed)} annotation(s) without 'area' (e.g. id {boxed[0].get('id')!r}): "
                      "the OKS scale is their box's w x h", stacklevel=2)
        for a in boxed:
            box = a["bbox"]
            if isinstance(box, list) and len(box) == 4 and all(isinstance(v, (int, float)) for v in box):
                a["area"] = float(box[2]) * float(box[3])
    for i, ann in enumerate(gt["annotations"]):
        where = f"GT annotations[{i}]" + (f" (id {ann['id']!r})" if isinstance(ann, dict) and "id" in ann
                                          else "")
        if not isinstance(ann, dict):
            raise EvalInputError(f"{where}: expected a JSON object, got {type(ann).__name__}")
        for key in ("image_id", "category_id", "keypoints", "area", "bbox"):
            if key not in ann:
                raise EvalInputError(f"{where}: required field {key!r} is missing")
        _check_points(ann, "keypoints", where, k, layout.name)
        _check_number(ann, "area", where)
        if "num_keypoints" in ann:
            _check_number(ann, "num_keypoints", where)
        box = ann["bbox"]
        if (not isinstance(box, list) or len(box) != 4
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                           for v in box)):
            raise EvalInputError(f"{where}, field 'bbox': expected 4 finite numbers [x, y, w, h], "
                                 f"got {box!r}")
    return gt


def _layout_points(recs: list[dict], k: int) -> np.ndarray:
    """``[N, 3K]``: every record's ``keypoints`` (checked to hold ``3 K`` numbers)."""
    if not recs:
        return np.zeros((0, 3 * k))
    return np.asarray([r["keypoints"] for r in recs], np.float64).reshape(len(recs), 3 * k)


def _score_key(part: str, whole: bool) -> str:
    return "score" if whole else f"{part}_score"


def evaluate_keypoints(gt: dict | str | Path, preds: list[dict], layout: Layout | str, engine: str = "faster"
                       ) -> dict[str, dict[str, float]]:
    """AP/AR of ``preds`` against ``gt`` for a keypoint layout with ``oks_sigmas`` (CrowdPose, AP-10K, a
    custom COCO layout): ``{part: {stat: value}}``, one entry per part of ``layout.parts`` (by default one
    part ``keypoints`` holding every point) with the 10 :data:`STATS`. ``engine``: one of :data:`ENGINES`.

    ``gt``: a COCO keypoint JSON (a dict or a path) whose annotations hold ``keypoints`` (``K * 3`` values in
    the layout's order), ``area``, ``bbox``, ``iscrowd``, ``num_keypoints``, ``category_id``. ``preds``: COCO
    keypoint results, ``{image_id, category_id, keypoints (K * 3; the third value a confidence, > 0 where
    found), score}``. A BODY_135-family layout (``oks_sigmas`` None) is refused: use
    :func:`evaluate_wholebody` (or :func:`evaluate`, which picks it). Inputs are checked first
    (:class:`EvalInputError` names the record, its field and, for a wrong length, K and the layout).

    The protocol is COCO's (pycocotools' ``COCOeval(..., "keypoints")``): OKS with
    ``kpt_oks_sigmas = layout.oks_sigmas`` restricted to the part's points, OKS scale the GT's ``area``,
    maxDets 20, the M/L ranges on the GT's ``area`` and on a detection's box of all its K points (the result
    loader's ``area``). Per part:

    - the part holding every point is exactly COCO's: a GT is ignored when crowd or its ``num_keypoints`` is
      0 (counted from ``v > 0`` where absent), every detection takes part, ranked by ``score``; this equals
      plain ``COCOeval`` on the same files (with their category ids rewritten, below) to 1e-6, either engine;
    - a part holding a subset of the points follows the whole-body rules of :func:`evaluate_wholebody`: a GT
      is ignored when crowd or without a labelled point (``v > 0``) there, a detection is dropped when none
      of its points there has confidence > 0, and detections are ranked by ``<part>_score``, falling back to
      ``score``.

    Categories: scoring is category-agnostic, as for one class. Every GT's and prediction's ``category_id`` is
    rewritten to :data:`ONE_CATEGORY` (AP-10K's 54 species share one keypoint list; a bottom-up model does
    not name the species), so a detection may match any GT of its image and AP is not averaged per category.
    pycocotools' ``params.useCats = 0`` is no substitute: for keypoints its ``computeOks`` still reads the
    per-category lists under category -1, finds no GT there and scores every image 0 (pycocotools 2.0.11).
    """
    layout = Layout.of(layout)
    _check_engine(engine)
    _check_layout(layout)
    k = layout.num_keypoints
    gt = load_layout_gt(gt, layout)
    whole_parts = {part for part, idx in layout.parts.items() if sorted(idx) == list(range(k))}
    score_keys = {"score"} | {_score_key(part, False) for part in layout.parts if part not in whole_parts}
    _check_prediction_records(preds, {img["id"] for img in gt["images"]}, {"keypoints": k}, score_keys,
                              layout.name)
    anns = gt["annotations"]
    gt_points, dt_points = _layout_points(anns, k), _layout_points(preds, k)
    one = {"images": gt["images"], "categories": [{"id": ONE_CATEGORY, "name": layout.name}]}
    sigmas = np.asarray(layout.oks_sigmas, np.float64)
    metrics = {}
    for part, idx in layout.parts.items():
        idx = np.asarray(idx)
        columns = (3 * idx[:, None] + np.arange(3)).reshape(-1)
        whole = part in whole_parts
        gt_pts = gt_points[:, columns]
        counts = None
        if whole:
            labelled = np.count_nonzero(gt_pts[:, 2::3] > 0, axis=1).tolist()
            counts = [ann.get("num_keypoints", n) for ann, n in zip(anns, labelled, strict=True)]
        gt_anns = _gt_records(anns, gt_pts, counts, category_id=ONE_CATEGORY)
        dt_anns = _dt_records(preds, dt_points[:, columns], dt_points, _score_key(part, whole), ONE_CATEGORY,
                              one_category=True, keep_all=whole)
        metrics[part] = _cocoeval(one, gt_anns, dt_anns, sigmas[idx], engine)
    return metrics


def evaluate(gt: dict | str | Path, preds: list[dict], layout: Layout | str, engine: str = "faster"
             ) -> dict[str, dict[str, float]]:
    """AP/AR per part for ``layout``: :func:`evaluate_wholebody` for the BODY_135 family (a layout with
    ``wholebody_parts``; ``gt`` and ``preds`` in COCO-WholeBody's format), :func:`evaluate_keypoints`
    otherwise (plain COCO keypoints in the layout's order)."""
    layout = Layout.of(layout)
    if layout.wholebody_parts:
        return evaluate_wholebody(gt, preds, engine)
    return evaluate_keypoints(gt, preds, layout, engine)


def format_table(metrics: dict[str, dict[str, float]]) -> str:
    """A fixed-width text table: one row per part, one column per stat."""
    head = f"{'part':<10}" + "".join(f"{s:>8}" for s in STATS)
    rows = [f"{part:<10}" + "".join(f"{m[s]:>8.3f}" for s in STATS) for part, m in metrics.items()]
    return "\n".join([head, "-" * len(head), *rows])
