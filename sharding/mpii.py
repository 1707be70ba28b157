"""MPII human pose in the common json list form (``image``, ``joints`` 16x2, ``joints_vis`` 16, ``center``,
``scale`` with the person box scale x 200 px). Entries of the same image become one sample.

Labels ``mpii``: shoulders, upper neck and head top (spec §1.2); the other MPII joints are not BODY_135
points. The person box is the box of all its labelled MPII joints; ``scale`` x 200 is the person height.
No ignore mask: the format does not say where the unannotated people are.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from sharding.keypoints import from_mpii16
from sharding.people import (
    SkipRecord,
    clip_to_image,
    finite,
    int_id,
    keypoint_box,
    numbers,
    person,
    read_image,
)
from sharding.source import Plan, Source, load_json, require
from src.core.record import Record


class Mpii(Source):
    path_keys = ("ann", "images")
    groups = ["mpii"]

    def plan(self, split: str) -> Plan:
        paths = self.inputs(split)
        entries = load_json(paths["ann"], list)
        by_image: dict[str, list] = defaultdict(list)
        for i, e in enumerate(entries):
            require(e, ("image", "joints", "center", "scale"), paths["ann"], f"entry {i}")
            by_image[e["image"]].append((i, e))
        self.image_dir = paths["images"]
        names = sorted(by_image)
        return Plan(items=[(n, j, by_image[n]) for j, n in enumerate(names)], notes={"entries": len(entries)})

    def convert(self, item) -> Record:
        name, index, entries = item
        people, all_joints = [], []
        for i, e in entries:
            where = f"{name} entry {i}"
            joints = numbers(e["joints"], where, "joints")
            vis = numbers(e.get("joints_vis", [1] * len(joints)), where, "joints_vis").reshape(-1)
            if joints.shape != (16, 2) or vis.shape != (16,):
                raise SkipRecord("wrong_keypoint_count", name, f"(entry {i}: joints {list(joints.shape)}, "
                                                               f"joints_vis {list(vis.shape)}; not 16x2, 16)")
            all_joints.append((i, e, joints, vis))
        data, ext, w, h = read_image(self.image_dir / name)
        for i, e, joints, vis in all_joints:
            kp = clip_to_image(from_mpii16(joints, vis), w, h, f"{name} entry {i}")
            raw = np.concatenate([joints, np.where((vis > 0) & (joints > 0).any(1), 1, 2)[:, None]], 1)
            box = keypoint_box(clip_to_image(raw, w, h, f"{name} entry {i}"))
            where = f"{name} entry {i}"
            scale = finite(numbers(e["scale"], where, "scale"), where, "scale") * 200
            center = [finite(c, where, "center") for c in numbers(e["center"], where, "center").reshape(-1)]
            if box is None or not (kp[:, 2] <= 1).any():
                continue  # nothing mappable left in the image: a person the loader cannot use
            people.append(person(i, kp, box, scale, center=center))
        if not people:
            raise SkipRecord("no_labelled_people", name)
        meta = {"image_id": int_id(name, index), "file_name": name, "width": w, "height": h,
                "groups": list(self.groups), "people": people}
        return Record(name.rsplit(".", 1)[0], data, ext, meta)
