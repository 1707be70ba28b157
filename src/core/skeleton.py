"""The BODY_135 layout as one ``Layout`` object: names, groups, PAF pairs, flip table, sigmas, and the
COCO-WholeBody part map. Dataset formats are converted into it by ``sharding.keypoints``.

Every other module takes its keypoint facts from ``BODY_135`` here (facts:
shared/docs/openpose_body135_spec.md §1–2); code that could work on another layout reads them from a
``layout`` attribute or argument instead.

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

import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

LAYOUT_DIR = Path(__file__).resolve().parents[2] / "conf" / "layout"
"""Where layout files live (``layout=NAME`` in a run's config picks ``conf/layout/NAME.yaml``)."""


@dataclass(frozen=True, eq=False)
class Layout:
    """A keypoint layout and the network output built on it: K heatmaps, then 2 channels per PAF pair.

    A layout is data: :meth:`to_dict` / :meth:`from_dict` (and :meth:`save` / :meth:`load` for YAML files,
    ``conf/layout/*.yaml``) carry every field by keypoint name, and two layouts are equal when their data is.

    name:            e.g. ``"BODY_135"``.
    names:           the K keypoint names, in channel order.
    groups:          group name -> contiguous index range; the ranges partition 0..K-1 in order (what a
                     source labels). Default: one group ``keypoints`` holding every point.
    group_extras:    group -> names of points outside it that a source labelling the group also labels.
    pairs:           PAF pairs ``(a, b)`` in channel order: pair k -> channels K+2k (x), K+2k+1 (y).
    flip:            left/right pairs of names swapped by a horizontal mirror (the rest map onto themselves).
    group_flip:      group -> its mirror group (groups not listed map onto themselves).
    sigmas:          the training Gaussian's sigma per keypoint, in input pixels.
    oks_sigmas:      the evaluator's OKS sigma per keypoint (COCO's meaning); None for the BODY_135 family,
                     scored with COCO-WholeBody's own sigmas through ``wholebody_parts``.
    parts:           part name -> the indices scored together (per-part AP and person part scores).
                     Default: one part ``keypoints`` holding every point.
    wholebody_parts: COCO-WholeBody field -> the indices it is read from (in that field's order); only the
                     BODY_135 family has it.
    limbs:           part -> the lines a skeleton drawing joins, by name. Default: the PAF pairs.
    joint_weights:   optional loss weight per keypoint (its heatmap channel); None: 1 everywhere.
    source_index:    for a layout that is a subset of BODY_135 (``BODY_FOOT``): the BODY_135 index of each of
                     its points. Its shards and batches keep 135-point keypoints; ``select`` picks this
                     layout's points (targets). ``None``: the layout's own shards hold its K points.
    """

    name: str
    names: tuple[str, ...]
    groups: dict[str, range]
    group_extras: dict[str, tuple[str, ...]]
    pairs: tuple[tuple[int, int], ...]
    flip: tuple[tuple[str, str], ...]
    group_flip: dict[str, str]
    sigmas: tuple[float, ...]
    oks_sigmas: tuple[float, ...] | None = None
    parts: dict[str, tuple[int, ...]] = field(default_factory=dict)
    wholebody_parts: dict[str, tuple[int, ...]] = field(default_factory=dict)
    limbs: dict[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)
    joint_weights: tuple[float, ...] | None = None
    source_index: tuple[int, ...] | None = None

    def __post_init__(self):
        k = len(self.names)
        if len(set(self.names)) != k or len(self.sigmas) != k:
            raise ValueError(f"{self.name}: names must be unique and one sigma per name")
        for what in ("oks_sigmas", "joint_weights"):
            values = getattr(self, what)
            if values is not None and len(values) != k:
                raise ValueError(f"{self.name}: {what} has {len(values)} values for {k} keypoints")
        if not self.groups:
            object.__setattr__(self, "groups", {"keypoints": range(k)})
        if not self.parts:
            object.__setattr__(self, "parts", {"keypoints": tuple(range(k))})
        if not self.limbs:
            object.__setattr__(self, "limbs", {"keypoints": tuple((self.names[a], self.names[b])
                                                                  for a, b in self.pairs)})
        if [i for r in self.groups.values() for i in r] != list(range(k)):
            raise ValueError(f"{self.name}: groups must partition 0..{k - 1} in order")
        if not all(0 <= a < k and 0 <= b < k and a != b for a, b in self.pairs):
            raise ValueError(f"{self.name}: a PAF pair is out of range or joins a point to itself")
        if not all(0 <= i < k for idx in self.parts.values() for i in idx):
            raise ValueError(f"{self.name}: a part holds an index outside 0..{k - 1}")
        for a, b in self.flip:  # unknown names raise here
            self.index(a), self.index(b)
        for extras in self.group_extras.values():
            self.indices(extras)
        for limbs in self.limbs.values():
            for a, b in limbs:
                self.index(a), self.index(b)

    # -- as data ---------------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """Plain data by name (what a layout file, a checkpoint and an exported file hold)."""
        named = lambda idx: [self.names[i] for i in idx]  # noqa: E731
        out = {
            "name": self.name,
            "keypoints": list(self.names),
            "pairs": [named(p) for p in self.pairs],
            "flip": [list(p) for p in self.flip],
            "sigmas": [float(x) for x in self.sigmas],
            "oks_sigmas": None if self.oks_sigmas is None else [float(x) for x in self.oks_sigmas],
            "parts": {n: named(idx) for n, idx in self.parts.items()},
            "groups": {n: named(r) for n, r in self.groups.items()},
            "group_extras": {n: list(v) for n, v in self.group_extras.items()},
            "group_flip": dict(self.group_flip),
            "wholebody_parts": {n: named(idx) for n, idx in self.wholebody_parts.items()},
            "limbs": {n: [list(p) for p in v] for n, v in self.limbs.items()},
            "joint_weights": None if self.joint_weights is None else [float(x) for x in self.joint_weights],
            "source_index": None if self.source_index is None else list(self.source_index),
        }
        return out

    @classmethod
    def from_dict(cls, data, where: str = "layout") -> Layout:
        """The layout of :meth:`to_dict`'s data (a dict or an OmegaConf node); missing optional keys take
        their defaults. Errors name ``where`` and the key."""
        data = _plain(data)
        unknown = set(data) - set(_FIELDS)
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {sorted(unknown)}; a layout holds {list(_FIELDS)}")
        for key in ("name", "keypoints", "pairs", "sigmas"):
            if data.get(key) is None:
                raise ValueError(f"{where}: {key!r} is missing")
        names = [str(n) for n in data["keypoints"]]
        at = {n: i for i, n in enumerate(names)}

        def index(name, what):
            if name not in at:
                raise ValueError(f"{where}: {what} names {name!r}, which is not one of its keypoints")
            return at[name]

        def indices(values, what):
            return tuple(index(n, what) for n in values)

        def contiguous(values, what):
            idx = indices(values, what)
            if list(idx) != list(range(idx[0], idx[0] + len(idx))) if idx else False:
                raise ValueError(f"{where}: group {what} must be consecutive keypoints in channel order")
            return range(idx[0], idx[-1] + 1) if idx else range(0)

        def optional(key):
            return None if data.get(key) is None else tuple(float(x) for x in data[key])

        return cls(
            name=str(data["name"]),
            names=tuple(names),
            groups={g: contiguous(v, f"groups.{g}") for g, v in (data.get("groups") or {}).items()},
            group_extras={g: tuple(v) for g, v in (data.get("group_extras") or {}).items()},
            pairs=tuple(indices(p, "pairs") for p in data["pairs"]),
            flip=tuple((str(a), str(b)) for a, b in (data.get("flip") or [])),
            group_flip=dict(data.get("group_flip") or {}),
            sigmas=tuple(float(x) for x in data["sigmas"]),
            oks_sigmas=optional("oks_sigmas"),
            parts={n: indices(v, f"parts.{n}") for n, v in (data.get("parts") or {}).items()},
            wholebody_parts={n: indices(v, f"wholebody_parts.{n}")
                             for n, v in (data.get("wholebody_parts") or {}).items()},
            limbs={n: tuple((str(a), str(b)) for a, b in v) for n, v in (data.get("limbs") or {}).items()},
            joint_weights=optional("joint_weights"),
            source_index=None if data.get("source_index") is None else tuple(int(i) for i in
                                                                              data["source_index"]),
        )

    def save(self, path) -> None:
        """Write the layout as a YAML file (lists of names and numbers, one pair per line)."""
        import yaml

        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False, width=110,
                                             default_flow_style=None))

    @classmethod
    def load(cls, path) -> Layout:
        """A layout YAML file (``conf/layout/*.yaml`` or one ``python -m src.layout`` wrote)."""
        import yaml

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"layout: no file at {path}")
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as err:
            raise ValueError(f"layout {path}: not YAML ({str(err).splitlines()[0]})") from None
        if not isinstance(data, dict):
            raise ValueError(f"layout {path}: expected a mapping of layout keys")
        return cls.from_dict(data, where=f"layout {path}")

    @classmethod
    def of(cls, layout) -> Layout:
        """A ``Layout`` from what a config or a file holds: a Layout, its data (dict / OmegaConf node), a
        built-in's name (``body135`` | ``body_foot``), a YAML file's path, or the name of a file in the
        project's ``conf/layout/``."""
        if isinstance(layout, Layout):
            return layout
        if isinstance(layout, str):
            if layout.lower() in LAYOUTS:
                return LAYOUTS[layout.lower()]
            named = LAYOUT_DIR / f"{layout}.yaml"
            return cls.load(named if not Path(layout).exists() and named.is_file() else layout)
        if layout is None:
            raise ValueError("layout: none given (a layout name, file or its data)")
        return cls.from_dict(layout)

    @cached_property
    def digest(self) -> str:
        """A content hash of the data (16 hex digits): what a manifest records to compare layouts."""
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def __eq__(self, other) -> bool:
        return isinstance(other, Layout) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(self.digest)

    # -- sizes ---------------------------------------------------------------------------------------------
    @property
    def num_keypoints(self) -> int:
        return len(self.names)

    @property
    def num_pairs(self) -> int:
        return len(self.pairs)

    @property
    def num_channels(self) -> int:
        """Output channels: K heatmaps + 2P PAF components."""
        return self.num_keypoints + 2 * self.num_pairs

    # -- indices -------------------------------------------------------------------------------------------
    @cached_property
    def _index(self) -> dict[str, int]:
        return {n: i for i, n in enumerate(self.names)}

    def index(self, name: str) -> int:
        """Index of the keypoint called ``name``."""
        try:
            return self._index[name]
        except KeyError:
            raise KeyError(f"{self.name} has no keypoint {name!r}") from None

    def indices(self, names: list[str] | tuple[str, ...]) -> list[int]:
        return [self.index(n) for n in names]

    def group_slice(self, group: str) -> slice:
        """``slice`` over a group's (contiguous) range, for ``kp[layout.group_slice("face")]``."""
        r = self.groups[group]
        return slice(r.start, r.stop)

    def group_of(self, k: int) -> str:
        """Name of the group holding keypoint ``k``."""
        return next(name for name, idx in self.groups.items() if k in idx)

    def hand(self, side: str) -> list[int]:
        """A 21-point hand of ``side`` 'left'|'right' in this layout: its wrist, then the hand group (the
        OpenPose JSON ``hand_*_keypoints_2d`` order, and COCO-WholeBody's ``*hand_kpts``)."""
        if side not in ("left", "right"):
            raise ValueError(f"hand side must be 'left' or 'right', got {side!r}")
        return self.indices(self.group_extras[side[0] + "hand"]) + list(self.groups[side[0] + "hand"])

    # -- PAF pairs -----------------------------------------------------------------------------------------
    @cached_property
    def pairs_a(self) -> np.ndarray:
        return np.array([a for a, _ in self.pairs])

    @cached_property
    def pairs_b(self) -> np.ndarray:
        return np.array([b for _, b in self.pairs])

    # -- labels and mirroring ------------------------------------------------------------------------------
    def labelled(self, groups: list[str] | tuple[str, ...]) -> np.ndarray:
        """Bool[K]: which points a source that labels ``groups`` provides (spec §1.2 mappings)."""
        out = np.zeros(self.num_keypoints, bool)
        for g in groups:
            if g not in self.groups:
                raise ValueError(f"unknown keypoint group {g!r}; known: {sorted(self.groups)}")
            out[list(self.groups[g])] = True
            out[self.indices(self.group_extras.get(g, ()))] = True
        return out

    @cached_property
    def flip_pairs(self) -> list[tuple[int, int]]:
        """The flip table as index pairs."""
        return [(self.index(a), self.index(b)) for a, b in self.flip]

    @cached_property
    def flip_index(self) -> np.ndarray:
        """``flipped[k] = original[flip_index[k]]`` after mirroring an image horizontally."""
        perm = np.arange(self.num_keypoints)
        for a, b in self.flip_pairs:
            perm[a], perm[b] = b, a
        return perm

    @cached_property
    def flip_channels(self) -> tuple[np.ndarray, np.ndarray]:
        """(source channel, sign) per output channel for maps of a mirrored image: ``maps[c] =
        sign[c] * mirrored_maps[source[c]]`` after flipping them back left-right. Heatmap k reads its mirror
        point's; PAF pair (a, b) reads the pair joining the mirrors of a and b, its x negated by the mirror
        and both components negated when that pair runs the other way (b' -> a'). A pair whose mirror is not
        a pair of the layout (BODY_135's eye rings are not mirror-symmetric) has sign 0: no mirrored value."""
        k = self.num_keypoints
        source = np.arange(self.num_channels)
        sign = np.ones(self.num_channels, np.float32)
        source[:k] = self.flip_index
        where = {pair: p for p, pair in enumerate(self.pairs)}
        for p, (a, b) in enumerate(self.pairs):
            fa, fb = int(self.flip_index[a]), int(self.flip_index[b])
            q, reverse = (where[fa, fb], False) if (fa, fb) in where else (where.get((fb, fa)), True)
            channels = slice(k + 2 * p, k + 2 * p + 2)
            if q is None:
                sign[channels] = 0.0
                continue
            source[channels] = (k + 2 * q, k + 2 * q + 1)
            sign[channels] = (1.0, -1.0) if reverse else (-1.0, 1.0)
        return source, sign

    def flip_groups(self, groups: list[str]) -> list[str]:
        """The groups a mirrored sample labels (left and right hands swap)."""
        return sorted(self.group_flip.get(g, g) for g in groups)

    # -- a subset of BODY_135 --------------------------------------------------------------------------------
    @property
    def shard_layout(self) -> Layout:
        """The layout whose points this layout's shards and batches hold: BODY_135 for a subset of it
        (``BODY_FOOT`` trains from the whole-body shards), the layout itself otherwise."""
        return self if self.source_index is None else BODY_135

    def select(self, keypoints, labelled):
        """BODY_135 keypoints ``[..., 135, 3]`` and labelled ``[..., 135]`` -> this layout's points (unchanged
        when they already have this layout's K, or for BODY_135 itself)."""
        if self.source_index is None or keypoints.shape[-2] == self.num_keypoints:
            return keypoints, labelled
        idx = list(self.source_index)
        return keypoints[..., idx, :], labelled[..., idx]

    # -- back to COCO (for evaluation) ----------------------------------------------------------------------
    @staticmethod
    def to_coco(kp: np.ndarray, as_gt: bool = False) -> np.ndarray:
        """``[N, 3]`` points -> COCO's ``[N, 3]``. ``as_gt``: ``kp`` carries visibility codes and the output
        COCO v (1 occluded, 2 visible, 0 otherwise, at (0, 0)); else ``kp[:, 2]`` is a confidence, kept as it
        is (the evaluator counts a point when it is > 0)."""
        out = np.asarray(kp, np.float32).copy()
        if as_gt:
            v = out[:, 2]
            out[:, 2] = np.where(v == 1, 2, np.where(v == 0, 1, 0))
            out[out[:, 2] == 0, :2] = 0
        return out

    def to_wholebody133(self, kp: np.ndarray, as_gt: bool = False) -> dict[str, list[float]]:
        """``[K, 3]`` -> the COCO-WholeBody keypoint fields of ``wholebody_parts`` (points as
        :meth:`to_coco`).
        A hand with none of its 20 own points keeps no wrist either: the shared body wrist alone would make
        the evaluator count an unannotated (or undetected) hand.
        """
        kp = self.to_coco(kp, as_gt)
        fields = {}
        for name, idx in self.wholebody_parts.items():
            part = kp[list(idx)]
            if name.endswith("hand_kpts") and not (part[1:, 2] > 0).any():
                part[0] = 0
            fields[name] = [round(float(x), 3) for x in part.reshape(-1)]
        return fields


# -- BODY_135 names (spec §1.1) ------------------------------------------------------------------------------
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
_NAMES = _BODY + ["L" + n for n in _HAND] + ["R" + n for n in _HAND] + _FACE

# -- groups: contiguous index ranges that partition the 135 points -------------------------------------------
_GROUPS = {
    "body": range(0, 17),
    "mpii": range(17, 19),
    "foot": range(19, 25),
    "lhand": range(25, 45),
    "rhand": range(45, 65),
    "face": range(65, 135),
}
# Points outside a group that a source labelling that group also labels (spec §1.2): a 21-point hand includes
# its wrist, a face set derives nose and eyes, MPII maps its shoulders.
_GROUP_EXTRAS = {"mpii": ("LShoulder", "RShoulder"), "lhand": ("LWrist",), "rhand": ("RWrist",),
                 "face": ("Nose", "LEye", "REye")}

# -- PAF pairs in the released channel order (spec §2.1): pair k -> output channels 135+2k (x), 136+2k (y) --
_PAIRS = (
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
)

# -- left/right flip by name (spec §1.4): 61 pairs ---------------------------------------------------------
_BODY_FLIP = [("LEye", "REye"), ("LEar", "REar"), ("LShoulder", "RShoulder"), ("LElbow", "RElbow"),
              ("LWrist", "RWrist"), ("LHip", "RHip"), ("LKnee", "RKnee"), ("LAnkle", "RAnkle"),
              ("LBigToe", "RBigToe"), ("LSmallToe", "RSmallToe"), ("LHeel", "RHeel")]
_HAND_FLIP = [("L" + n, "R" + n) for n in _HAND]
# The face mirrors like the iBUG 68 layout: the contour end to end, the brows and eyes onto each other (each
# eye's corners and lids swap order), the nostrils and the mouth about its centre line.
_FACE_FLIP = ([(f"FaceContour{i}", f"FaceContour{16 - i}") for i in range(8)]
              + [(f"REyeBrow{i}", f"LEyeBrow{i}") for i in range(5)]
              + [("NoseLower0", "NoseLower4"), ("NoseLower1", "NoseLower3")]
              + [("REye0", "LEye3"), ("REye1", "LEye2"), ("REye2", "LEye1"), ("REye3", "LEye0"),
                 ("REye4", "LEye5"), ("REye5", "LEye4")]
              + [("OMouth0", "OMouth6"), ("OMouth1", "OMouth5"), ("OMouth2", "OMouth4"),
                 ("OMouth11", "OMouth7"), ("OMouth10", "OMouth8")]
              + [("IMouth0", "IMouth4"), ("IMouth1", "IMouth3"), ("IMouth7", "IMouth5")]
              + [("RPupil", "LPupil")])

# -- the skeleton as drawn (OpenPose's rendering joins anatomical neighbours, not the 152 PAF pairs) --------
def _chain(*names: str, closed: bool = False) -> list[tuple[str, str]]:
    ring = (*names, names[0]) if closed else names
    return list(zip(ring[:-1], ring[1:], strict=True))


def _hand_limbs(side: str) -> tuple[tuple[str, str], ...]:
    return tuple(pair for finger, joints in _FINGERS
                 for pair in _chain(f"{side}Wrist", *(f"{side}{finger}{j}" for j in joints)))


_LIMBS = {
    "body": tuple(_chain("LEar", "LEye", "Nose", "REye", "REar") + _chain("LWrist", "LElbow", "LShoulder",
                  "RShoulder", "RElbow", "RWrist") + _chain("LShoulder", "LHip", "RHip", "RShoulder")
                  + _chain("LHip", "LKnee", "LAnkle") + _chain("RHip", "RKnee", "RAnkle")),
    "mpii": tuple(_chain("LShoulder", "UpperNeck", "RShoulder") + _chain("UpperNeck", "HeadTop")),
    "foot": tuple(_chain("LAnkle", "LBigToe", "LSmallToe") + _chain("LAnkle", "LHeel")
                  + _chain("RAnkle", "RBigToe", "RSmallToe") + _chain("RAnkle", "RHeel")),
    "lhand": _hand_limbs("L"),
    "rhand": _hand_limbs("R"),
    "face": tuple(_chain(*(f"FaceContour{i}" for i in range(17)))
                  + _chain(*(f"REyeBrow{i}" for i in range(5))) + _chain(*(f"LEyeBrow{i}" for i in range(5)))
                  + _chain(*(f"NoseUpper{i}" for i in range(4)))
                  + _chain(*(f"NoseLower{i}" for i in range(5)))
                  + _chain(*(f"REye{i}" for i in range(6)), closed=True)
                  + _chain(*(f"LEye{i}" for i in range(6)), closed=True)
                  + _chain(*(f"OMouth{i}" for i in range(12)), closed=True)
                  + _chain(*(f"IMouth{i}" for i in range(8)), closed=True)),
}

# -- Gaussian sigma per keypoint in input pixels (spec §3.2): 7 body/foot/MPII, 7 x 5.75/7 hands and face --
_SIGMA_BODY, _SIGMA_SMALL = 7.0, 5.75


def _at(*names: str) -> tuple[int, ...]:
    return tuple(_NAMES.index(n) for n in names)


# -- the COCO-WholeBody parts, scored one by one (per-part AP, person part scores) ---------------------------
_PARTS = {
    "body": tuple(_GROUPS["body"]),
    "foot": tuple(_GROUPS["foot"]),
    "face": tuple(_GROUPS["face"])[:68],  # the iBUG 68, without the pupils
    "lefthand": (*_at("LWrist"), *_GROUPS["lhand"]),
    "righthand": (*_at("RWrist"), *_GROUPS["rhand"]),
}

BODY_135 = Layout(
    name="BODY_135",
    names=tuple(_NAMES),
    groups=_GROUPS,
    group_extras=_GROUP_EXTRAS,
    pairs=_PAIRS,
    flip=tuple(_BODY_FLIP + _HAND_FLIP + _FACE_FLIP),
    group_flip={"lhand": "rhand", "rhand": "lhand"},
    sigmas=tuple(_SIGMA_BODY if k < _GROUPS["foot"].stop else _SIGMA_SMALL for k in range(len(_NAMES))),
    parts=_PARTS,
    wholebody_parts={  # COCO-WholeBody field -> the BODY_135 indices it is read from (in that field's order)
        "keypoints": _PARTS["body"],
        "foot_kpts": _PARTS["foot"],
        "face_kpts": _PARTS["face"],
        "lefthand_kpts": _PARTS["lefthand"],
        "righthand_kpts": _PARTS["righthand"],
    },
    limbs=_LIMBS,
)
"""The OpenPose whole-body layout: 135 keypoints, 152 PAF pairs, 439 output channels."""

# -- body + foot (paper Table 2's "body-foot" networks): BODY_135 indices 0-24 ------------------------------
# COCO 17 + MPII UpperNeck/HeadTop + 6 foot points, and the 35 BODY_135 PAF pairs among them in BODY_135 order
# (conf/model/deep_body_foot.yaml: 25 + 2 x 35 = 95 channels). Not OpenPose's BODY_25 (whose neck is the
# shoulder midpoint and which has a MidHip point): the 25 points BODY_135 already trains, so every shard and
# converter serves both layouts.
_BF = range(0, _GROUPS["foot"].stop)
BODY_FOOT = Layout(
    name="BODY_FOOT",
    names=tuple(_NAMES[i] for i in _BF),
    groups={g: _GROUPS[g] for g in ("body", "mpii", "foot")},
    group_extras={"mpii": _GROUP_EXTRAS["mpii"]},
    pairs=tuple((a, b) for a, b in _PAIRS if a in _BF and b in _BF),
    flip=tuple(_BODY_FLIP),
    group_flip={},
    sigmas=tuple(BODY_135.sigmas[i] for i in _BF),
    parts={"body": _PARTS["body"], "foot": _PARTS["foot"]},
    wholebody_parts={"keypoints": _PARTS["body"], "foot_kpts": _PARTS["foot"]},
    limbs={g: _LIMBS[g] for g in ("body", "mpii", "foot")},
    source_index=tuple(_BF),
)
"""Body and feet: 25 keypoints (BODY_135's first 25), 35 PAF pairs, 95 output channels."""

LAYOUTS = {"body135": BODY_135, "body_135": BODY_135, "body_foot": BODY_FOOT}
"""The built-in layouts by name (any case); ``conf/layout/{body135,body_foot}.yaml`` hold the same data."""

_FIELDS = ("name", "keypoints", "pairs", "flip", "sigmas", "oks_sigmas", "parts", "groups", "group_extras",
           "group_flip", "wholebody_parts", "limbs", "joint_weights", "source_index")


def _plain(data) -> dict:
    """A dict of plain Python values from a dict or an OmegaConf node."""
    if not isinstance(data, dict):
        from omegaconf import OmegaConf

        data = OmegaConf.to_container(data, resolve=True)
    return data
