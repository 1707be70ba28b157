"""Dataset keypoint formats -> BODY_135 (spec §1.2 mappings, visibility codes of ``src.core.skeleton``).

Each ``from_*`` returns one person's ``[135, 3]`` array; points the source never labels get code 4. Indices
into a source format (COCO order, MPII joints, the iBUG 68 face) stay numbers; BODY_135 points are named.
"""

from __future__ import annotations

import numpy as np

from src.core.skeleton import BODY_135

_FACE = BODY_135.group_slice("face")
# iBUG 68 face points (source indices) averaged into BODY_135 points (spec §1.2)
IBUG_NOSE = [27, 28, 29, 30, 31, 32, 34, 35]
IBUG_REYE = list(range(36, 42))
IBUG_LEYE = list(range(42, 48))


def _empty(n_people: int = 0) -> np.ndarray:
    out = np.zeros((n_people, BODY_135.num_keypoints, 3), np.float32)
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


def from_coco_keypoints(kpts, num_keypoints: int) -> np.ndarray:
    """A COCO ``keypoints`` list of a layout's own K points ``[K*3]`` -> ``[K, 3]`` with the codes (no
    mapping: the layout is the file's; an unlabelled point is background, as in COCO)."""
    out = np.zeros((num_keypoints, 3), np.float32)
    _put(out, range(num_keypoints), kpts)
    return out


def from_coco17(kpts: np.ndarray) -> np.ndarray:
    """COCO-17 ``[17*3]`` -> ``[135, 3]``; everything else is 'not in dataset' (4)."""
    out = _empty(1)[0]
    _put(out, BODY_135.groups["body"], kpts)
    return out


def from_coco23(kpts: np.ndarray) -> np.ndarray:
    """OpenPose's COCO+foot ``[23*3]`` (17 body, then LBigToe..RHeel) -> ``[135, 3]``."""
    kpts = np.asarray(kpts, np.float32).reshape(23, 3)
    out = from_coco17(kpts[:17])
    _put(out, BODY_135.groups["foot"], kpts[17:])
    return out


def _face_part(out: np.ndarray) -> None:
    """Pupils from the eye contours when the source has only 68 points (spec §1.2)."""
    face = out[_FACE]
    out[BODY_135.index("RPupil")] = _mean_points(face, IBUG_REYE)
    out[BODY_135.index("LPupil")] = _mean_points(face, IBUG_LEYE)


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
    for key in ("foot_kpts", "face_kpts"):
        if key in ann:
            dst = BODY_135.wholebody_parts[key]
            _put(out, dst, ann[key])
            _mark_unannotated(out, dst)
    if "face_kpts" in ann:
        _face_part(out)
    for key, side in (("lefthand_kpts", "left"), ("righthand_kpts", "right")):
        if key not in ann:
            continue
        wrist, *dst = BODY_135.hand(side)
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
    # MPII joints 13 l shoulder, 12 r shoulder, 8 upper neck, 9 head top
    for src, dst in ((13, "LShoulder"), (12, "RShoulder"), (8, "UpperNeck"), (9, "HeadTop")):
        labelled = vis[src] > 0 and (joints[src] > 0).any()
        out[BODY_135.index(dst)] = (*joints[src], 1) if labelled else (0, 0, 2)
    return out


def from_hand21(kpts: np.ndarray, side: str) -> np.ndarray:
    """One 21-point hand (wrist, then thumb..pinky base->tip) of ``side`` 'left'|'right' -> ``[135, 3]``."""
    if side not in ("left", "right"):
        raise ValueError(f"hand side must be 'left' or 'right', got {side!r}")
    kpts = np.asarray(kpts, np.float32).reshape(21, 3)
    out = _empty(1)[0]
    wrist, *dst = BODY_135.hand(side)
    _put(out, [wrist], kpts[0])
    _put(out, dst, kpts[1:])
    return out


def from_hand42(kpts: np.ndarray) -> np.ndarray:
    """Both hands, left 21 then right 21 -> ``[135, 3]``."""
    kpts = np.asarray(kpts, np.float32).reshape(42, 3)
    out = from_hand21(kpts[:21], "left")
    right = from_hand21(kpts[21:], "right")
    out[BODY_135.hand("right")] = right[BODY_135.hand("right")]
    return out


def from_face(kpts: np.ndarray) -> np.ndarray:
    """iBUG 68 (or 70 with pupils) face points -> ``[135, 3]``; nose and eyes derived as spec §1.2."""
    kpts = np.asarray(kpts, np.float32).reshape(-1, 3)
    if len(kpts) not in (68, 70):
        raise ValueError(f"a face has 68 or 70 points, got {len(kpts)}")
    out = _empty(1)[0]
    start = BODY_135.groups["face"].start  # face point f -> BODY_135 start + f (70: the pupils too)
    _put(out, range(start, start + len(kpts)), kpts)
    face = out[_FACE]
    out[BODY_135.index("Nose")] = _mean_points(face, IBUG_NOSE)
    out[BODY_135.index("LEye")] = _mean_points(face, IBUG_LEYE)
    out[BODY_135.index("REye")] = _mean_points(face, IBUG_REYE)
    if len(kpts) == 68:
        _face_part(out)
    return out
