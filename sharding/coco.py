"""COCO-format person sources: COCO-17 keypoints, OpenPose's COCO-foot (23), COCO-WholeBody (133), any COCO
keypoint file of a layout of its own (``CocoKeypoints``), and person-free COCO images as backgrounds. One
sample per image, with every annotated person.

Ignore mask (spec §3.4 step 1, via pycocotools ``annToMask``): people without a labelled keypoint, and crowd
regions not covered by a labelled person. Two optional meta fields serve only the val ``gt.json`` (loaders
ignore them): ``unlabelled`` (box, area, iscrowd of the masked annotations) and, for COCO-WholeBody, each
person's ``hand_wrists`` (the hands' own wrist annotations, left then right).
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
from pycocotools.coco import COCO

from sharding.keypoints import from_coco17, from_coco23, from_coco_keypoints, from_wholebody133
from sharding.people import (
    InputError,
    SkipRecord,
    check_box,
    clip_to_image,
    finite,
    ignore_png,
    labelled_count,
    numbers,
    person,
    read_image,
)
from sharding.source import Plan, Source, load_json, require
from src.core.record import Record
from src.core.skeleton import BODY_135, Layout


def load_coco(path: Path, ann_fields: tuple[str, ...], required: tuple[str, ...] = ("id", "image_id", "bbox")
              ) -> tuple[COCO, list[SkipRecord]]:
    """A pycocotools index of ``path`` after checking its structure (``required`` in every annotation,
    ``ann_fields`` in every non-crowd one); annotations pointing at an unknown image are dropped and
    reported."""
    data = load_json(path)
    for k in ("images", "annotations"):
        require(data, (k,), path, "the top level")
    ids = set()
    for i, im in enumerate(data["images"]):
        require(im, ("id", "file_name", "width", "height"), path, f"images[{i}]")
        ids.add(im["id"])
    skipped, kept = [], []
    for i, ann in enumerate(data["annotations"]):
        where = f"annotations[{i}] (id {ann.get('id')})"
        require(ann, required, path, where)
        if not ann.get("iscrowd", 0):
            require(ann, ann_fields, path, where)
        if ann["image_id"] in ids:
            kept.append(ann)
        else:
            skipped.append(SkipRecord("unknown_image_id", f"annotation {ann['id']}",
                                      f"(image_id {ann['image_id']})"))
    data["annotations"] = kept
    data.setdefault("categories", [{"id": 1, "name": "person"}])
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress; the bars are ours
        coco.createIndex()
    return coco, skipped


def _region(coco: COCO, ann: dict, h: int, w: int) -> np.ndarray:
    """The annotation's pixels (its box when it has no segmentation)."""
    if ann.get("segmentation"):
        return coco.annToMask(ann).astype(bool)
    x, y, bw, bh = (int(round(v)) for v in ann["bbox"])
    m = np.zeros((h, w), bool)
    m[max(y, 0):max(y + bh, 0), max(x, 0):max(x + bw, 0)] = True
    return m


class CocoCrops(Source):
    """COCO-style json of lone hands or faces (one part per annotation, no person boxes): plans the images
    that have annotations and rejects an image whose annotations have the wrong number of keypoints."""

    path_keys = ("ann", "images")
    sizes: tuple[int, ...] = ()  # accepted lengths of ``keypoints``
    empty_note = "images_without_annotations"

    def plan(self, split: str) -> Plan:
        paths = self.inputs(split)
        self.coco, skipped = load_coco(paths["ann"], ("keypoints",), ("id", "image_id"))
        self.image_dir = paths["images"]
        items = [i for i in sorted(self.coco.imgs) if self.coco.imgToAnns.get(i)]
        return Plan(items=items, skipped=skipped, notes={self.empty_note: len(self.coco.imgs) - len(items)})

    def checked(self, img_id) -> tuple[dict, str, list[dict]]:
        """The image's info, its name for reports, and its annotations (all of an accepted length)."""
        info = self.coco.imgs[img_id]
        item = f"image {img_id} ({info['file_name']})"
        anns = self.coco.imgToAnns[img_id]
        for ann in anns:
            where = f"{item} annotation {ann['id']}"
            n = numbers(ann["keypoints"], where, "keypoints").size
            if "bbox" in ann:
                ann["bbox"] = check_box(ann["bbox"], info["width"], info["height"], where)
            if n not in self.sizes:
                raise SkipRecord("wrong_keypoint_count", item, f"(annotation {ann['id']}: {n} values)")
        return info, item, anns


class _CocoPeople(Source):
    """Shared COCO logic; subclasses give ``groups``, the keypoint fields and ``points(ann)``."""

    path_keys = ("ann", "images")
    fields: tuple[str, ...] = ("keypoints",)
    lengths: dict[str, int] = {}

    def plan(self, split: str) -> Plan:
        paths = self.inputs(split)
        coco, skipped = load_coco(paths["ann"], self.fields)
        self.coco, self.image_dir = coco, paths["images"]
        items, empty = [], 0
        for img_id in sorted(coco.imgs):
            anns = coco.imgToAnns.get(img_id, [])
            if any(not a.get("iscrowd", 0) and self._maybe_labelled(a) for a in anns):
                items.append(img_id)
            else:
                empty += 1
        return Plan(items=items, skipped=skipped, notes={"images_without_labelled_people": empty})

    def _maybe_labelled(self, ann: dict) -> bool:
        """Any visibility > 0; a field that is not a list of numbers counts (``convert`` reports it)."""
        try:
            return any(any(v > 0 for v in ann.get(f, [])[2::3]) for f in self.fields)
        except TypeError:
            return True

    def points(self, ann: dict) -> np.ndarray:
        """One annotation's ``[K, 3]`` keypoints in ``self.layout`` with the visibility codes."""
        raise NotImplementedError

    def extra(self, ann: dict) -> dict:
        """Optional per-person fields for the val gt.json."""
        return {}

    def convert(self, img_id) -> Record:
        info = self.coco.imgs[img_id]
        item = f"image {img_id} ({info['file_name']})"
        anns = self.coco.imgToAnns.get(img_id, [])
        width, height = (int(finite(info[k], item, k)) for k in ("width", "height"))
        for ann in anns:
            where = f"{item} annotation {ann['id']}"
            ann["bbox"] = check_box(ann["bbox"], width, height, where)
            if "area" in ann:
                ann["area"] = finite(numbers(ann["area"], where, "area"), where, "area")
            if ann.get("iscrowd", 0):
                continue
            for f in self.fields:
                n = self.lengths[f]
                if len(numbers(ann[f], where, f).reshape(-1)) != 3 * n:
                    raise SkipRecord("wrong_keypoint_count", item, f"(annotation {ann['id']}: {f} has "
                                                                   f"{len(ann[f])} values, expected {3 * n})")
        data, ext, w, h = read_image(self.image_dir / info["file_name"], info["width"], info["height"])
        people, masked, labelled_px = [], [], np.zeros((h, w), bool)
        for ann in anns:
            if ann.get("iscrowd", 0):
                masked.append(ann)
                continue
            kp = clip_to_image(self.points(ann), w, h, f"{item} annotation {ann['id']}")
            if labelled_count(kp) == 0:
                masked.append(ann)
                continue
            x, y, bw, bh = ann["bbox"]
            people.append(person(ann["id"], kp, ann["bbox"], bh, ann.get("area", bw * bh)) | self.extra(ann))
            if any(a.get("iscrowd", 0) for a in anns):
                labelled_px |= _region(self.coco, ann, h, w)
        ignore = np.zeros((h, w), bool)
        for ann in masked:
            region = _region(self.coco, ann, h, w)
            ignore |= region & ~labelled_px if ann.get("iscrowd", 0) else region
        meta = {"image_id": img_id, "file_name": info["file_name"], "width": w, "height": h,
                "groups": list(self.groups), "people": people}
        if masked:
            meta["unlabelled"] = [{"bbox": a["bbox"], "area": a.get("area", a["bbox"][2] * a["bbox"][3]),
                                   "iscrowd": int(a.get("iscrowd", 0))} for a in masked]
        return Record(f"{img_id}", data, ext, meta, ignore_png(ignore))


class CocoBody(_CocoPeople):
    """COCO keypoints (17): labels ``body``."""

    groups = ["body"]
    lengths = {"keypoints": 17}

    def points(self, ann: dict) -> np.ndarray:
        return from_coco17(ann["keypoints"])


class CocoFoot(_CocoPeople):
    """OpenPose's COCO-foot json (COCO with 23 keypoints: 17 body then LBigToe..RHeel): ``body``, ``foot``."""

    groups = ["body", "foot"]
    lengths = {"keypoints": 23}

    def points(self, ann: dict) -> np.ndarray:
        return from_coco23(ann["keypoints"])


class CocoWholeBody(_CocoPeople):
    """COCO-WholeBody v1.0 (133): everything except MPII's upper neck and head top."""

    groups = ["body", "foot", "lhand", "rhand", "face"]
    fields = ("keypoints", "foot_kpts", "face_kpts", "lefthand_kpts", "righthand_kpts")
    lengths = {"keypoints": 17, "foot_kpts": 6, "face_kpts": 68, "lefthand_kpts": 21, "righthand_kpts": 21}

    def points(self, ann: dict) -> np.ndarray:
        return from_wholebody133(ann)

    def extra(self, ann: dict) -> dict:
        """The hands' own wrist annotations (BODY_135 keeps one wrist per side), so gt.json equals the
        original GT."""
        return {"hand_wrists": [[float(v) for v in ann[k][:3]] for k in ("lefthand_kpts", "righthand_kpts")]}


class CocoKeypoints(_CocoPeople):
    """Any COCO keypoint file whose ``keypoints`` are ``layout``'s points in its order (``python -m src.layout
    from_coco=`` writes the layout from the file): boxes, crowd regions masked, people without keypoints
    masked, visibility codes as for COCO; every category of the file (AP-10K's species share one keypoint
    list). Its shards hold the layout's K points, and its val ``gt.json`` is a plain COCO keypoint file."""

    def __init__(self, train: dict | None = None, val: dict | None = None, layout=None, **options):
        super().__init__(train, val, layout=layout if isinstance(layout, str) else None, **options)
        self.has_layout = layout is not None
        if self.has_layout:
            self.layout = Layout.of(layout)
        self.groups = list(self.layout.groups)
        self.lengths = {"keypoints": self.layout.num_keypoints}

    def configured(self) -> list[str]:
        """As any source; a split with paths but no ``layout`` is an error naming the setting."""
        splits = super().configured()
        if splits and not self.has_layout:
            raise InputError("CocoKeypoints: give the layout of its keypoints (sources.<name>.layout=NAME "
                             "or a file; python -m src.layout from_coco=ANN.json out=FILE writes one)")
        return splits

    def fingerprint_extra(self) -> dict:
        return {**super().fingerprint_extra(), "layout": self.layout.digest}

    def points(self, ann: dict) -> np.ndarray:
        return from_coco_keypoints(ann["keypoints"], self.layout.num_keypoints)


class CocoBackgrounds(Source):
    """COCO images without any person annotation (instances or person_keypoints json): no people, and every
    group labelled, so all channels learn background there (spec §3.4 step 5)."""

    path_keys = ("ann", "images")
    groups = list(BODY_135.groups)

    def plan(self, split: str) -> Plan:
        paths = self.inputs(split)
        coco, skipped = load_coco(paths["ann"], ())
        self.coco, self.image_dir = coco, paths["images"]
        person_cats = {c["id"] for c in coco.dataset["categories"] if c.get("name") == "person"} or {1}
        items = [i for i in sorted(coco.imgs)
                 if not any(a.get("category_id", 1) in person_cats for a in coco.imgToAnns.get(i, []))]
        return Plan(items=items, skipped=skipped, notes={"images_with_people": len(coco.imgs) - len(items)})

    def convert(self, img_id) -> Record:
        info = self.coco.imgs[img_id]
        data, ext, w, h = read_image(self.image_dir / info["file_name"], info["width"], info["height"])
        meta = {"image_id": img_id, "file_name": info["file_name"], "width": w, "height": h,
                "groups": list(self.groups), "people": []}
        return Record(f"{img_id}", data, ext, meta)
