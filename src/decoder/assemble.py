"""People from scored connections: the greedy assembly and the person filter of spec §7.5.

``greedy`` walks the connections best first (one Python loop over accepted connections, a few thousand in a
crowded image; people are tracked as part bitmasks so merges test disjointness in one operation).
``merge_face_fragments`` folds face-only fragments into the person whose face box they overlap (one loop over
the fragments); ``keep_people`` applies §7.5 step 3 on the result as arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from src.core.skeleton import Layout
from src.decoder.connections import Connections
from src.decoder.peaks import Peaks

WHOLE = ("face", "lhand", "rhand")
"""Groups a person counts as one part each (§7.5 step 3); every other point counts one by one, the feet
only in the fallback pass."""


@dataclass(frozen=True)
class Counting:
    """How §7.5 counts a person's parts in a layout: ``singles`` (points counted one each), ``wholes`` (groups
    counted once when any of their points is found), ``foot`` (points counted only in the fallback pass, and
    the foot-only rule), ``face`` (the points of face fragments to merge; empty: no merge)."""

    singles: np.ndarray
    wholes: tuple[np.ndarray, ...]
    foot: np.ndarray
    face: np.ndarray

    @classmethod
    def of(cls, layout: Layout) -> Counting:
        group = lambda g: np.array(layout.groups.get(g, ()), np.int64)  # noqa: E731
        singles = [i for g, r in layout.groups.items() if g not in (*WHOLE, "foot") for i in r]
        return cls(np.array(singles, np.int64), tuple(group(g) for g in WHOLE if g in layout.groups),
                   group("foot"), group("face"))


def greedy(peaks: Peaks, conns: Connections, num_keypoints: int) -> tuple[np.ndarray, np.ndarray]:
    """§7.5 step 2 -> ``slots [P, K]`` (peak index per part, -1 when missing) and the indices of the
    connections that were used (created, extended, merged or closed a person)."""
    part = peaks.part.tolist()
    owner = [-1] * len(peaks)
    masks: list[int] = []
    members: list[list[int]] = []
    used: list[int] = []
    for c, (a, b) in enumerate(zip(conns.a.tolist(), conns.b.tolist(), strict=True)):
        pa, pb = owner[a], owner[b]
        if pa < 0 and pb < 0:
            owner[a] = owner[b] = len(masks)
            masks.append((1 << part[a]) | (1 << part[b]))
            members.append([a, b])
        elif pa < 0 or pb < 0:  # attach the free end to the other end's person if that slot is empty
            person, free = (pa, b) if pb < 0 else (pb, a)
            if masks[person] >> part[free] & 1:
                continue
            owner[free] = person
            masks[person] |= 1 << part[free]
            members[person].append(free)
        elif pa != pb:
            if masks[pa] & masks[pb]:
                continue
            for q in members[pb]:
                owner[q] = pa
            members[pa] += members[pb]
            masks[pa] |= masks[pb]
            members[pb], masks[pb] = [], 0
        used.append(c)
    alive = [m for m in members if m]
    slots = np.full((len(alive), num_keypoints), -1, np.int64)
    for p, m in enumerate(alive):
        slots[p, peaks.part[m]] = m
    return slots, np.asarray(used, np.int64)


def pair_scores(slots: np.ndarray, conns: Connections, used: np.ndarray, n_peaks: int, num_pairs: int
                ) -> np.ndarray:
    """``[P, num_pairs]`` PAF score of each used connection whose two ends both belong to the same person."""
    out = np.zeros((len(slots), num_pairs), np.float64)
    owner = np.full(n_peaks, -1)
    p, j = np.nonzero(slots >= 0)
    owner[slots[p, j]] = p
    pa, pb = owner[conns.a[used]], owner[conns.b[used]]
    mine = (pa >= 0) & (pa == pb)
    out[pa[mine], conns.k[used][mine]] = conns.score[used][mine]  # a person has one pair of each type
    return out


def _face_box(xy: np.ndarray, margin: float) -> np.ndarray:
    lo, hi = xy.min(0), xy.max(0)
    grow = margin * (hi - lo)
    return np.concatenate([lo - grow, hi + grow])


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over the smaller box (a fragment inside a bigger face overlaps fully)."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw < 0 or ih < 0:
        return 0.0
    smaller = min(np.prod(a[2:] - a[:2]), np.prod(b[2:] - b[:2]))
    return float(iw * ih / smaller) if smaller > 0 else 1.0


def merge_face_fragments(slots: np.ndarray, peaks: Peaks, face: np.ndarray,
                         margins: tuple[float, float] = (0.2, 0.1), min_overlap: float = 0.3,
                         min_overlap_few: float = 0.01) -> np.ndarray:
    """Face-only people are folded into the face-bearing person whose face box overlaps theirs most
    (fragment box grown by ``margins[0]``, the other by ``margins[1]``; accepted above ``min_overlap``, or
    above ``min_overlap_few`` when fewer than 3 people have a face). Points fill empty slots or replace
    weaker ones. ``face``: the layout's face points (none: nothing to merge)."""
    if not len(face):
        return slots
    found = slots >= 0
    face_only = found[:, face].any(1) & ~found[:, :face[0]].any(1)
    bearers = np.nonzero(found[:, face].any(1) & ~face_only)[0]
    if not face_only.any() or not len(bearers):
        return slots
    slots = slots.copy()
    xy = np.stack([peaks.x, peaks.y], 1)
    limit = min_overlap if len(bearers) >= 3 else min_overlap_few
    boxes = [_face_box(xy[slots[p, face][slots[p, face] >= 0]], margins[1]) for p in bearers]
    for f in np.nonzero(face_only)[0]:
        mine = slots[f, face]
        box = _face_box(xy[mine[mine >= 0]], margins[0])
        overlaps = [_overlap(box, other) for other in boxes]
        best = int(np.argmax(overlaps))
        if overlaps[best] <= limit:
            continue
        target = slots[bearers[best], face]
        theirs = np.where(target >= 0, peaks.score[target], -np.inf)
        ours = np.where(mine >= 0, peaks.score[mine], -np.inf)
        take = (mine >= 0) & (ours > theirs)
        slots[bearers[best], face[take]] = mine[take]
        slots[f] = -1
    return slots[(slots >= 0).any(1)]


def count_parts(found: np.ndarray, counting: Counting, with_feet: bool) -> np.ndarray:
    """Counted parts per person: body and MPII (or a plain layout's) points one each, face 1, each hand 1
    (feet only if asked)."""
    count = found[:, counting.singles].sum(1)
    for whole in counting.wholes:
        count = count + found[:, whole].any(1)
    return count + found[:, counting.foot].sum(1) if with_feet else count


def keep_people(found: np.ndarray, total: np.ndarray, counting: Counting, min_parts: int, min_mean: float,
                fallback_parts: int, fallback_mean: float) -> np.ndarray:
    """§7.5 step 3 thresholds -> bool[P]. A person with feet and at most 4 other counted parts is dropped;
    when nobody survives, the fallback thresholds are used with the feet counted."""
    count = count_parts(found, counting, with_feet=False)
    foot_only = found[:, counting.foot].any(1) & (count <= 4)
    keep = ~foot_only & (count >= min_parts) & (total >= min_mean * np.maximum(count, 1))
    if keep.any() or not len(found):
        return keep
    count = count_parts(found, counting, with_feet=True)
    return (count >= fallback_parts) & (total >= fallback_mean * np.maximum(count, 1))
