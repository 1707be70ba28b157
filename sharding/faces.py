"""Face landmark sets: iBUG/300-W ``.pts`` files and COCO-style 68-landmark json (300W, 300VW, ...).

Labels ``face`` (65-134) plus nose and eyes derived from it (spec §1.2). Every face is a "person" holding only
its face; ``scale`` = FACE_TO_PERSON x the landmark box height, centred on the landmarks. Coordinates are
taken as written (mmpose's 300W/300VW json equal the ``.pts`` values, so no 1-based shift is applied).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sharding.coco import CocoCrops
from sharding.keypoints import from_face
from sharding.people import (
    FACE_TO_PERSON,
    InputError,
    SkipRecord,
    clip_to_image,
    labelled_count,
    numbers,
    part_person,
    read_image,
)
from sharding.source import Plan, Source
from src.core.record import Record


def _face(pid: int, kpts: np.ndarray, w: int, h: int, item: str) -> dict | None:
    kpts = numbers(kpts, item, "keypoints").reshape(-1)
    if kpts.size not in (68 * 3, 70 * 3):
        raise SkipRecord("wrong_keypoint_count", item, f"({kpts.size} values, expected 68x3 or 70x3)")
    kp = clip_to_image(from_face(kpts), w, h, item)
    return part_person(pid, kp, FACE_TO_PERSON, side="height") if labelled_count(kp) else None


class CocoFaces(CocoCrops):
    """COCO-style face json (``keypoints`` 68x3 or 70x3 per annotation), one sample per image."""

    groups = ["face"]
    sizes = (68 * 3, 70 * 3)
    empty_note = "images_without_faces"

    def convert(self, img_id) -> Record:
        info, item, anns = self.checked(img_id)
        data, ext, w, h = read_image(self.image_dir / info["file_name"], info["width"], info["height"])
        faces = (_face(a["id"], a["keypoints"], w, h, f"{item} annotation {a['id']}") for a in anns)
        people = [p for p in faces if p]
        if not people:
            raise SkipRecord("no_labelled_faces", item)
        meta = {"image_id": img_id, "file_name": info["file_name"], "width": w, "height": h,
                "groups": list(self.groups), "people": people}
        return Record(f"{img_id}", data, ext, meta)


def read_pts(path: Path) -> np.ndarray:
    """An iBUG ``.pts`` file (``version``, ``n_points: N``, ``{``, N lines ``x y``, ``}``) -> [n, 2].
    A malformed header or body is an ``InputError`` naming the file and field."""
    try:
        lines = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a text .pts file") from None
    header = dict(ln.split(":", 1) for ln in lines if ":" in ln)
    if "n_points" not in header:
        raise InputError(f"{path}: required field 'n_points' missing")
    if "{" not in lines or "}" not in lines:
        raise InputError(f"{path}: required field '{{ ... }}' (the point block) missing")
    body = lines[lines.index("{") + 1:lines.index("}")]
    try:
        pts = np.array([[float(v) for v in ln.split()] for ln in body], np.float32).reshape(-1, 2)
        n = int(header["n_points"])
    except ValueError as e:
        raise InputError(f"{path}: field 'points' is not numbers ({e})") from None
    if len(pts) != n:
        raise SkipRecord("wrong_keypoint_count", path.name, f"(n_points {n}, {len(pts)} points listed)")
    return pts


class PtsFaces(Source):
    """A folder searched recursively for ``.pts`` files; each one's image is ``<stem>.jpg``/``.png`` beside
    it or in a sibling ``imgs`` folder (300VW: ``<video>/annot``, ``<video>/imgs``). One face per file."""

    path_keys = ("dir",)
    groups = ["face"]

    def plan(self, split: str) -> Plan:
        self.root = self.inputs(split)["dir"]
        files = sorted(self.root.rglob("*.pts"))
        items, skipped = [], []
        for index, path in enumerate(files):  # parsed up front: a malformed file stops the run before writing
            try:
                items.append((index, path, read_pts(path)))
            except SkipRecord as s:
                skipped.append(s)
        return Plan(items=items, skipped=skipped, notes={"pts_files": len(files)})

    def _image(self, pts: Path) -> Path:
        for folder in (pts.parent, pts.parent.parent / "imgs"):
            for ext in (".jpg", ".png", ".jpeg"):
                if (folder / (pts.stem + ext)).is_file():
                    return folder / (pts.stem + ext)
        raise SkipRecord("missing_file", pts.with_suffix(".jpg"), f"(image for {pts.name})")

    def convert(self, item) -> Record:
        index, path, pts = item
        rel = str(path.relative_to(self.root))
        if len(pts) not in (68, 70):
            raise SkipRecord("wrong_keypoint_count", rel, f"({len(pts)} points, expected 68 or 70)")
        image = self._image(path)
        data, ext, w, h = read_image(image)
        face = _face(0, np.concatenate([pts, np.full((len(pts), 1), 2, np.float32)], 1), w, h, rel)
        if face is None:
            raise SkipRecord("no_labelled_faces", rel)
        meta = {"image_id": index, "file_name": str(image.relative_to(self.root)), "width": w, "height": h,
                "groups": list(self.groups), "people": [face]}
        return Record(rel.rsplit(".", 1)[0].replace("/", "_"), data, ext, meta)
