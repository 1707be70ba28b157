"""Writers for decoded people: COCO result records (COCO-WholeBody for the BODY_135 family, plain COCO
keypoints for any other layout) and OpenPose JSON version 1.3 (spec §7.6).

Both take ``src.decoder.decode.Person`` objects whose keypoints are already in the pixels wanted in the file
(usually the original image's, as ``src.inference`` returns them), in the layout's point order.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from src.core.skeleton import BODY_135, Layout
from src.decoder.decode import Person

FIELDS = {name: len(idx) for name, idx in BODY_135.wholebody_parts.items()}
"""COCO-WholeBody keypoint field -> number of points, in the 133-point concatenation order (the evaluator
reads records by it; a layout holding only some of the fields, BODY_FOOT, writes the others as zeros)."""
SCORE_KEYS = {"body": "score", "foot": "foot_score", "face": "face_score", "lefthand": "lefthand_score",
               "righthand": "righthand_score", "wholebody": "wholebody_score"}


def wholebody_record(person: Person, image_id: int, layout: Layout = BODY_135, category_id: int = 1) -> dict:
    """One COCO-WholeBody result record. ``v`` of each point is its confidence, 0 where nothing was found,
    so a part without any found point is dropped by the evaluator. ``score`` is the body score (see the
    part scores of ``Person``), ``wholebody_score`` the person score."""
    fields = {name: [0.0] * (3 * n) for name, n in FIELDS.items()}
    fields.update(layout.to_wholebody133(person.keypoints))
    scores = {key: round(person.part_scores.get(part, 0.0), 6) for part, key in SCORE_KEYS.items()}
    return {"image_id": image_id, "category_id": category_id, **fields, **scores}


def keypoint_record(person: Person, image_id: int, category_id: int = 1) -> dict:
    """One COCO keypoint result: ``keypoints`` K x (x, y, confidence) in the layout's order, ``score`` the
    person score."""
    return {"image_id": image_id, "category_id": category_id, "keypoints": _flat(person.keypoints),
            "score": round(float(person.score), 6)}


def records(people: list[Person], image_id: int, layout: Layout = BODY_135, category_id: int = 1
            ) -> list[dict]:
    """Result records for all people of one image: COCO-WholeBody ones for a layout with COCO-WholeBody
    parts, plain COCO keypoint ones otherwise."""
    if layout.wholebody_parts:
        return [wholebody_record(p, image_id, layout, category_id) for p in people]
    return [keypoint_record(p, image_id, category_id) for p in people]


def _flat(kp: np.ndarray) -> list[float]:
    return np.round(np.asarray(kp, np.float32).astype(np.float64).reshape(-1), 3).tolist()


def openpose_person(person: Person, layout: Layout = BODY_135) -> dict:
    """One entry of OpenPose's ``people``: all the layout's points in ``pose_keypoints_2d`` (as the released
    BODY_135 model writes them); for a layout with a face and hands (BODY_135), face (70) and hands (21, wrist
    included) copied from the same person so that tools reading the separate arrays work; no 3-D;
    ``person_id`` -1 as OpenPose writes without tracking."""
    kp = person.keypoints
    has = lambda g: g in layout.groups  # noqa: E731
    return {
        "person_id": [-1],
        "pose_keypoints_2d": _flat(kp),
        "face_keypoints_2d": _flat(kp[list(layout.groups["face"])]) if has("face") else [],
        "hand_left_keypoints_2d": _flat(kp[layout.hand("left")]) if has("lhand") else [],
        "hand_right_keypoints_2d": _flat(kp[layout.hand("right")]) if has("rhand") else [],
        "pose_keypoints_3d": [],
        "face_keypoints_3d": [],
        "hand_left_keypoints_3d": [],
        "hand_right_keypoints_3d": [],
    }


def openpose_json(people: list[Person], layout: Layout = BODY_135) -> dict:
    """The per-frame OpenPose document, version 1.3, with the layout's name (the points' order)."""
    return {"version": 1.3, "layout": layout.name, "people": [openpose_person(p, layout) for p in people]}


def write_openpose_json(people: list[Person], path: str | Path, layout: Layout = BODY_135) -> Path:
    """Write ``openpose_json(people)`` to ``path`` (OpenPose names it ``<image stem>_keypoints.json``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(openpose_json(people, layout)))
    return path
