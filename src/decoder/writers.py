"""Writers for decoded people: COCO-WholeBody result records and OpenPose JSON version 1.3 (spec §7.6).

Both take ``src.decoder.decode.Person`` objects whose keypoints are already in the pixels wanted in the file
(usually the original image's, as ``src.inference`` returns them).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from src.core.skeleton import BODY_135
from src.decoder.decode import Person

FACE_70 = list(BODY_135.groups["face"])
HAND_LEFT_21 = BODY_135.hand("left")
HAND_RIGHT_21 = BODY_135.hand("right")
"""OpenPose's separate arrays, read from the same person: 70 face points; each hand, body wrist first."""


def wholebody_record(person: Person, image_id: int, category_id: int = 1) -> dict:
    """One COCO-WholeBody result record. ``v`` of each point is its confidence, 0 where nothing was found,
    so a part without any found point is dropped by the evaluator. ``score`` is the body score (see the
    part scores of ``Person``), ``wholebody_score`` the person score."""
    parts = person.part_scores
    return {
        "image_id": image_id,
        "category_id": category_id,
        **BODY_135.to_wholebody133(person.keypoints),
        "score": round(parts["body"], 6),
        "foot_score": round(parts["foot"], 6),
        "face_score": round(parts["face"], 6),
        "lefthand_score": round(parts["lefthand"], 6),
        "righthand_score": round(parts["righthand"], 6),
        "wholebody_score": round(parts["wholebody"], 6),
    }


def wholebody_records(people: list[Person], image_id: int, category_id: int = 1) -> list[dict]:
    """Records for all people of one image."""
    return [wholebody_record(p, image_id, category_id) for p in people]


def _flat(kp: np.ndarray) -> list[float]:
    return np.round(np.asarray(kp, np.float32).astype(np.float64).reshape(-1), 3).tolist()


def openpose_person(person: Person) -> dict:
    """One entry of OpenPose's ``people``: all 135 points in ``pose_keypoints_2d`` (as the released BODY_135
    model writes them), plus face (70) and hands (21, wrist included) copied from the same person so that
    tools reading the separate arrays work; no 3-D; ``person_id`` -1 as OpenPose writes without tracking."""
    kp = person.keypoints
    return {
        "person_id": [-1],
        "pose_keypoints_2d": _flat(kp),
        "face_keypoints_2d": _flat(kp[FACE_70]),
        "hand_left_keypoints_2d": _flat(kp[HAND_LEFT_21]),
        "hand_right_keypoints_2d": _flat(kp[HAND_RIGHT_21]),
        "pose_keypoints_3d": [],
        "face_keypoints_3d": [],
        "hand_left_keypoints_3d": [],
        "hand_right_keypoints_3d": [],
    }


def openpose_json(people: list[Person]) -> dict:
    """The per-frame OpenPose document, version 1.3."""
    return {"version": 1.3, "people": [openpose_person(p) for p in people]}


def write_openpose_json(people: list[Person], path: str | Path) -> Path:
    """Write ``openpose_json(people)`` to ``path`` (OpenPose names it ``<image stem>_keypoints.json``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(openpose_json(people)))
    return path
