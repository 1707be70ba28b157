"""The BODY_135 layout: names, groups, PAF pairs, flip table, sigmas, and dataset mappings.

Every other module takes its keypoint facts from here (facts: shared/docs/openpose_body135_spec.md §1–2).

Keypoint arrays are ``[..., 135, 3]`` holding ``(x, y, v)`` in pixels with the training visibility codes of
spec §1.3:

====  =====================================================================================
v     meaning
====  =====================================================================================
0     labelled, occluded                      (COCO v=1)  -> Gaussian and PAFs drawn
1     labelled, visible                       (COCO v=2)  -> Gaussian and PAFs drawn
2     not labelled for this person, or outside the image  -> trained as background
3     this person's part was not annotated (e.g. a COCO-WholeBody hand with ``*_valid`` false)
      -> masked inside the person's box (spec §3.4 step 3)
4     the source never labels this point                  -> channel masked (spec §3.4 step 2)
====  =====================================================================================

Visibility 3 for unannotated COCO-WholeBody parts is this project's choice: the released code only knows
COCO-17/23, where an unlabelled body point is background (v=2). A blurry face whose annotators declined it is
not evidence of "no face here", so it is masked around its person instead.
"""

from __future__ import annotations

import numpy as np

NUM_KEYPOINTS = 135
NUM_PAIRS = 152
STRIDE = 8

# -- names (spec §1.1) ------------------------------------------------------------------------------------
_BODY = ["Nose", "LEye", "REye", "LEar", "REar", "LShoulder", "RShoulder", "LElbow", "RElbow", "LWrist",
         "RWrist", "LHip", "RHip", "LKnee", "RKnee", "LAnkle", "RAnkle", "UpperNeck", "HeadTop",
         "LBigToe", "LSmallToe", "LHeel", "RBigToe", "RSmallToe", "RHeel"]
_FINGERS = [("Thumb", ["1CMC", "2Knuckles", "3IP", "4FingerTip"])] + [
    (f, ["1Knuckles", "2PIP", "3DIP", "4FingerTip"]) for f in ("Index", "Middle", "Ring", "Pinky")]
_HAND = [f"{finger}{joint}" for finger, joints in _FINGERS for joint in joints]
_FACE = ([f"FaceContour{i}" for i in range(17)] + [f"REyeBrow{i}" for i in range(5)]
         + [f"LEyeBrow{i}" for i in range(4, -1, -1)] + [f"NoseUpper{i}" for i in range(4)]
         + [f"NoseLower{i}" for i in range(5)] + [f"REye{i}" for i in range(6)]
         + [f"LEye{i}" for i in range(6)]
         + [f"OMouth{i}" for i in range(12)] + [f"IMouth{i}" for i in range(8)] + ["RPupil", "LPupil"])
NAMES: list[str] = _BODY + ["L" + n for n in _HAND] + ["R" + n for n in _HAND] + _FACE

# -- groups: contiguous index ranges that partition the 135 points -----------------------------------------
GROUPS: dict[str, range] = {
    "body": range(0, 17),
    "mpii": range(17, 19),
    "foot": range(19, 25),
    "lhand": range(25, 45),
    "rhand": range(45, 65),
    "face": range(65, 135),
}
# Points outside a group that a source labelling that group also labels (spec §1.2): a 21-point hand includes
# its wrist, a face set derives nose and eyes, MPII maps its shoulders.
_GROUP_EXTRAS = {"mpii": [5, 6], "lhand": [9], "rhand": [10], "face": [0, 1, 2]}

# -- PAF pairs in the released channel order (spec §2.1): pair k -> output channels 135+2k (x), 136+2k (y) --
PAIRS: list[tuple[int, int]] = [
    (0, 1), (0, 2), (1, 3), (2, 4), (0, 5), (0, 6), (5, 7), (6, 8), (7, 9), (8, 10), (5, 11), (6, 12),
    (11, 13), (12, 14), (13, 15), (14, 16), (15, 19), (19, 20), (15, 21), (16, 22), (22, 23), (16, 24),
    (5, 17), (17, 18), (6, 17), (3, 4), (3, 5), (4, 6), (5, 9), (6, 10), (9, 10), (9, 11), (10, 12),
    (11, 12), (15, 16), (9, 25), (25, 26), (26, 27), (27, 28), (9, 29), (29, 30), (30, 31), (31, 32),
    (9, 33), (33, 34), (34, 35), (35, 36), (9, 37), (37, 38), (38, 39), (39, 40), (9, 41), (41, 42),
    (42, 43), (43, 44), (10, 45), (45, 46), (46, 47), (47, 48), (10, 49), (49, 50), (50, 51), (51, 52),
    (10, 53), (53, 54), (54, 55), (55, 56), (10, 57), (57, 58), (58, 59), (59, 60), (10, 61), (61, 62),
    (62, 63), (63, 64), (0, 95), (2, 104), (1, 107), (65, 66), (66, 67), (67, 68), (68, 69), (69, 70),
    (70, 71), (71, 72), (72, 73), (73, 74), (74, 75), (75, 76), (76, 77), (77, 78), (78, 79), (79, 80),
    (80, 81), (65, 82), (81, 91), (82, 83), (83, 84), (84, 85), (85, 86), (86, 87), (87, 88), (88, 89),
    (89, 90), (90, 91), (86, 92), (87, 92), (92, 93), (93, 94), (94, 95), (95, 98), (98, 97), (97, 96),
    (98, 99), (99, 100), (92, 104), (92, 107), (101, 102), (102, 103), (103, 104), (104, 105), (105, 106),
    (107, 108), (108, 109), (109, 110), (110, 111), (111, 112), (98, 116), (113, 114), (114, 115),
    (115, 116), (116, 117), (117, 118), (118, 119), (119, 120), (120, 121), (121, 122), (122, 123),
    (123, 124), (113, 125), (119, 129), (125, 126), (126, 127), (127, 128), (128, 129), (129, 130),
    (130, 131), (131, 132), (101, 133), (104, 133), (107, 134), (110, 134),
]
PAIRS_A = np.array([a for a, _ in PAIRS])
PAIRS_B = np.array([b for _, b in PAIRS])

# -- left/right flip (spec §1.4): 61 pairs -----------------------------------------------------------------
_FACE_FLIP = ([(f, 16 - f) for f in range(8)] + [(17 + i, 26 - i) for i in range(5)] + [(31, 35), (32, 34)]
              + [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]
              + [(48, 54), (49, 53), (50, 52), (59, 55), (58, 56), (60, 64), (61, 63), (67, 65)] + [(68, 69)])
FLIP_PAIRS: list[tuple[int, int]] = (
    [(1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16), (19, 22), (20, 23), (21, 24)]
    + [(25 + i, 45 + i) for i in range(20)]
    + [(65 + a, 65 + b) for a, b in _FACE_FLIP]
)


def _flip_permutation() -> np.ndarray:
    perm = np.arange(NUM_KEYPOINTS)
    for a, b in FLIP_PAIRS:
        perm[a], perm[b] = b, a
    return perm


FLIP_INDEX = _flip_permutation()
"""``flipped[k] = original[FLIP_INDEX[k]]`` after mirroring an image horizontally."""

FLIP_GROUP = {"lhand": "rhand", "rhand": "lhand"}

# -- Gaussian sigma per keypoint in input pixels (spec §3.2): 7 body/foot/MPII, 7 x 5.75/7 hands and face ----
SIGMA_BODY = 7.0
SIGMA_SMALL = 5.75
SIGMAS = np.where(np.arange(NUM_KEYPOINTS) < 25, SIGMA_BODY, SIGMA_SMALL)


def group_of(k: int) -> str:
    """Name of the group holding keypoint ``k``."""
    return next(name for name, idx in GROUPS.items() if k in idx)


def labelled_keypoints(groups: list[str] | tuple[str, ...]) -> np.ndarray:
    """Bool[135]: which points a source that labels ``groups`` provides (spec §1.2 mappings)."""
    out = np.zeros(NUM_KEYPOINTS, bool)
    for g in groups:
        if g not in GROUPS:
            raise ValueError(f"unknown keypoint group {g!r}; known: {sorted(GROUPS)}")
        out[list(GROUPS[g])] = True
        out[_GROUP_EXTRAS.get(g, [])] = True
    return out


def flip_groups(groups: list[str]) -> list[str]:
    """The groups a mirrored sample labels (left and right hands swap)."""
    return sorted(FLIP_GROUP.get(g, g) for g in groups)


# -- into BODY_135 -----------------------------------------------------------------------------------------
def _empty(n_people: int = 0) -> np.ndarray:
    out = np.zeros((n_people, NUM_KEYPOINTS, 3), np.float32)
    out[..., 2] = 4
    return out


def coco_visibility(v: np.ndarray) -> np.ndarray:
    """COCO v (0 unlabelled, 1 occluded, 2 visible; floats > 0 count as labelled) -> codes 2, 0, 1."""
    v = np.asarray(v, np.float32)
    return np.where(v <= 0, 2, np.where(v >= 2, 1, 0)).astype(np.float32)


def _put(out: np.ndarray, dst: list[int] | range, xyv: np.ndarray) -> None:
    dst = list(dst)
    xyv = np.asarray(xyv, np.float32).reshape(-1, 3)
    v = coco_visibility(xyv[:, 2])
    out[dst, :2] = np.where((v == 2)[:, None], 0, xyv[:, :2])
    out[dst, 2] = v


def _mean_points(face: np.ndarray, idx: list[int]) -> np.ndarray:
    """Average of several source points with the spec §1.3 visibility rule (``face`` rows: BODY_135 codes)."""
    pts = face[idx]
    v = pts[:, 2]
    if (v == 4).any():
        code = 4
    elif (v == 3).any():  # a part not annotated for this person: what is derived from it is not either
        code = 3
    elif (v == 2).all():
        code = 2
    elif (v == 2).any():
        code = 3
    elif (v == 0).any():
        code = 0
    else:
        code = 1
    xy = pts[:, :2].mean(0) if code <= 1 else np.zeros(2, np.float32)
    return np.array([xy[0], xy[1], code], np.float32)


def from_coco17(kpts: np.ndarray) -> np.ndarray:
    """COCO-17 ``[17*3]`` -> ``[135, 3]``; everything else is 'not in dataset' (4)."""
    out = _empty(1)[0]
    _put(out, GROUPS["body"], kpts)
    return out


def from_coco23(kpts: np.ndarray) -> np.ndarray:
    """OpenPose's COCO+foot ``[23*3]`` (17 body, then LBigToe..RHeel) -> ``[135, 3]``."""
    kpts = np.asarray(kpts, np.float32).reshape(23, 3)
    out = from_coco17(kpts[:17])
    _put(out, GROUPS["foot"], kpts[17:])
    return out


def _face_part(out: np.ndarray) -> None:
    """Pupils from the eye contours when the source has only 68 points (spec §1.2)."""
    face = out[65:135]
    out[133] = _mean_points(face, list(range(36, 42)))
    out[134] = _mean_points(face, list(range(42, 48)))


def _mark_unannotated(out: np.ndarray, idx: list[int] | range) -> None:
    """A whole part with no labelled point: masked around its person (code 3), not background."""
    idx = list(idx)
    if (out[idx, 2] == 2).all():
        out[idx, 2] = 3


def from_wholebody133(ann: dict) -> np.ndarray:
    """A COCO-WholeBody annotation (``keypoints``, ``foot_kpts``, ``face_kpts``, ``*hand_kpts``) -> [135, 3].

    Each hand's own wrist merges into the body wrist: the body wrist wins when labelled, else the hand's.
    A part with no labelled point becomes code 3; pupils come from the eye contours.
    """
    out = from_coco17(ann["keypoints"])
    for key, dst in (("foot_kpts", GROUPS["foot"]), ("face_kpts", range(65, 133))):
        if key in ann:
            _put(out, dst, ann[key])
            _mark_unannotated(out, dst)
    if "face_kpts" in ann:
        _face_part(out)
    for key, wrist, dst in (("lefthand_kpts", 9, GROUPS["lhand"]), ("righthand_kpts", 10, GROUPS["rhand"])):
        if key not in ann:
            continue
        hand = np.asarray(ann[key], np.float32).reshape(21, 3)
        _put(out, dst, hand[1:])
        _mark_unannotated(out, dst)
        if out[wrist, 2] == 2 and hand[0, 2] > 0:
            _put(out, [wrist], hand[0])
    return out


def from_mpii16(joints: np.ndarray, joints_vis: np.ndarray) -> np.ndarray:
    """MPII ``[16, 2]`` + visibility ``[16]`` -> ``[135, 3]`` (spec §1.2: shoulders, upper neck, head top)."""
    joints = np.asarray(joints, np.float32).reshape(16, 2)
    vis = np.asarray(joints_vis, np.float32).reshape(16)
    out = _empty(1)[0]
    for src, dst in ((13, 5), (12, 6), (8, 17), (9, 18)):
        labelled = vis[src] > 0 and (joints[src] > 0).any()
        out[dst] = (*joints[src], 1) if labelled else (0, 0, 2)
    return out


def from_hand21(kpts: np.ndarray, side: str) -> np.ndarray:
    """One 21-point hand (wrist, then thumb..pinky base->tip) of ``side`` 'left'|'right' -> ``[135, 3]``."""
    if side not in ("left", "right"):
        raise ValueError(f"hand side must be 'left' or 'right', got {side!r}")
    kpts = np.asarray(kpts, np.float32).reshape(21, 3)
    out = _empty(1)[0]
    wrist, dst = (9, GROUPS["lhand"]) if side == "left" else (10, GROUPS["rhand"])
    _put(out, [wrist], kpts[0])
    _put(out, dst, kpts[1:])
    return out


def from_hand42(kpts: np.ndarray) -> np.ndarray:
    """Both hands, left 21 then right 21 -> ``[135, 3]``."""
    kpts = np.asarray(kpts, np.float32).reshape(42, 3)
    out = from_hand21(kpts[:21], "left")
    right = from_hand21(kpts[21:], "right")
    out[[10, *GROUPS["rhand"]]] = right[[10, *GROUPS["rhand"]]]
    return out


def from_face(kpts: np.ndarray) -> np.ndarray:
    """iBUG 68 (or 70 with pupils) face points -> ``[135, 3]``; nose and eyes derived as spec §1.2."""
    kpts = np.asarray(kpts, np.float32).reshape(-1, 3)
    if len(kpts) not in (68, 70):
        raise ValueError(f"a face has 68 or 70 points, got {len(kpts)}")
    out = _empty(1)[0]
    _put(out, range(65, 65 + len(kpts)), kpts)
    face = out[65:135]
    out[0] = _mean_points(face, [27, 28, 29, 30, 31, 32, 34, 35])
    out[1] = _mean_points(face, list(range(42, 48)))
    out[2] = _mean_points(face, list(range(36, 42)))
    if len(kpts) == 68:
        _face_part(out)
    return out


# -- back to COCO-WholeBody 133 (for evaluation) ----------------------------------------------------------
WHOLEBODY_PARTS: dict[str, list[int]] = {
    "keypoints": list(range(17)),
    "foot_kpts": list(range(19, 25)),
    "face_kpts": list(range(65, 133)),
    "lefthand_kpts": [9, *range(25, 45)],
    "righthand_kpts": [10, *range(45, 65)],
}
"""COCO-WholeBody field -> the BODY_135 indices it is read from (in that field's order)."""


def to_wholebody133(kp: np.ndarray, as_gt: bool = False) -> dict[str, list[float]]:
    """``[135, 3]`` -> the five COCO-WholeBody keypoint fields.

    ``as_gt``: ``kp`` carries visibility codes and the output COCO v (1 occluded, 2 visible, 0 otherwise);
    else ``kp[:, 2]`` is a confidence, written as it is (the evaluator counts a point when it is > 0).
    A hand with none of its 20 own points keeps no wrist either: the shared body wrist alone would make the
    evaluator count an unannotated (or undetected) hand.
    """
    kp = np.asarray(kp, np.float32)
    fields = {}
    for name, idx in WHOLEBODY_PARTS.items():
        part = kp[idx].copy()
        if as_gt:
            v = part[:, 2]
            part[:, 2] = np.where(v == 1, 2, np.where(v == 0, 1, 0))
            part[part[:, 2] == 0, :2] = 0
        if name.endswith("hand_kpts") and not (part[1:, 2] > 0).any():
            part[0] = 0
        fields[name] = [round(float(x), 3) for x in part.reshape(-1)]
    return fields
