"""Hand sets: COCO-style 21-point hand json (OneHand10K, CMU Panoptic hand, FreiHAND) and CMU HandDB raw
json files (``hand_pts`` 21x3, ``is_left``). Each hand is a "person" carrying only that hand and its wrist.

Side: these formats rarely say which hand it is. ``side: right`` (the released HAND_135_21 mapping, which
puts every 21-point hand on the right; flip augmentation makes the left ones), ``left``, or ``filename``
(``*_l.*`` / ``*_r.*``, the CMU HandDB naming). A sample labels only the sides it holds (``lhand`` and/or
``rhand``); every other channel is masked by the loader. ``scale`` = HAND_TO_PERSON x the hand's longer side.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from sharding.coco import CocoCrops
from sharding.keypoints import from_hand21
from sharding.people import (
    HAND_TO_PERSON,
    InputError,
    SkipRecord,
    clip_to_image,
    int_id,
    labelled_count,
    numbers,
    part_person,
    read_image,
)
from sharding.source import Plan, Source, load_json, require
from src.core.record import Record

_SUFFIX = re.compile(r"_([lLrR])$")


def hand_side(file_name: str, side: str) -> str:
    """``left``/``right`` for a hand, from the configured side or the file name's ``_l``/``_r`` suffix."""
    if side in ("left", "right"):
        return side
    m = _SUFFIX.search(Path(file_name).stem)
    if side != "filename" or not m:
        raise SkipRecord("unknown_hand_side", file_name, f"(side: {side}; no _l/_r suffix)")
    return "left" if m.group(1).lower() == "l" else "right"


def _hand(pid: int, kpts, side: str, w: int, h: int, item: str) -> dict | None:
    kpts = numbers(kpts, item, "keypoints").reshape(-1)
    if kpts.size != 63:
        raise SkipRecord("wrong_keypoint_count", item, f"({kpts.size} values, expected 63)")
    kp = clip_to_image(from_hand21(kpts, side), w, h, item)
    return part_person(pid, kp, HAND_TO_PERSON) if labelled_count(kp) else None


def _groups(people_sides: list[str]) -> list[str]:
    return sorted({"lhand" if s == "left" else "rhand" for s in people_sides})


class CocoHands(CocoCrops):
    """COCO-style hand json: one sample per image, every annotation one hand."""

    sizes = (21 * 3,)
    empty_note = "images_without_hands"

    def __init__(self, train: dict | None = None, val: dict | None = None, side: str = "right"):
        super().__init__(train, val, side=side)
        if side not in ("left", "right", "filename"):
            raise InputError(f"CocoHands: side must be left, right or filename, got {side!r}")
        self.side = side
        self.groups = ["lhand", "rhand"] if side == "filename" else ["lhand" if side == "left" else "rhand"]

    def convert(self, img_id) -> Record:
        info, item, anns = self.checked(img_id)
        side = hand_side(info["file_name"], self.side)
        data, ext, w, h = read_image(self.image_dir / info["file_name"], info["width"], info["height"])
        people = [p for ann in anns
                  if (p := _hand(ann["id"], ann["keypoints"], side, w, h, f"{item} annotation {ann['id']}"))]
        if not people:
            raise SkipRecord("no_labelled_hands", item)
        meta = {"image_id": img_id, "file_name": info["file_name"], "width": w, "height": h,
                "groups": _groups([side] * len(people)), "people": people}
        return Record(str(img_id), data, ext, meta)


class HandDbRaw(Source):
    """CMU HandDB raw json files in ``dir`` (``<name>.json`` beside ``<name>.jpg``): ``hand_pts`` 21 x
    (x, y, annotated 0/1), ``is_left``. Hands of the same image (``<img>_l``, ``<img>_r``) stay separate
    samples, as the files are; their visibility flag 1 means labelled and visible."""

    path_keys = ("dir",)
    groups = ["lhand", "rhand"]

    def plan(self, split: str) -> Plan:
        folder = self.inputs(split)["dir"]
        files = sorted(folder.glob("*.json"))
        items = []
        for i, f in enumerate(files):
            d = load_json(f)
            require(d, ("hand_pts", "is_left"), f, "the top level")
            items.append((i, f, d))
        return Plan(items=items, notes={"json_files": len(files)})

    def convert(self, item) -> Record:
        index, path, d = item
        side = "left" if d["is_left"] else "right"
        pts = numbers(d["hand_pts"], path.name, "hand_pts")
        if pts.shape != (21, 3):
            raise SkipRecord("wrong_keypoint_count", path.name, f"(hand_pts {list(pts.shape)}, not 21x3)")
        pts[:, 2] = np.where(pts[:, 2] > 0, 2, 0)  # annotated -> COCO "visible"
        image = next((p for p in (path.with_suffix(e) for e in (".jpg", ".png")) if p.is_file()),
                     path.with_suffix(".jpg"))
        data, ext, w, h = read_image(image)
        hand = _hand(0, pts, side, w, h, path.name)
        if hand is None:
            raise SkipRecord("no_labelled_hands", path.name)
        meta = {"image_id": int_id(path.name, index), "file_name": image.name, "width": w, "height": h,
                "groups": _groups([side]), "people": [hand]}
        return Record(path.stem, data, ext, meta)

