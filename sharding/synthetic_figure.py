"""One procedural person of the synthetic world: a BODY_135 skeleton sampled in a body frame, and its drawing.

The skeleton is built facing the viewer (the person's left at +x, y down, pelvis at the origin, standing
height about 1), posed by sampled limb angles and lengths, then placed in the image by a similarity transform.
Heads and hands are drawn about 1.5x their anatomical size so they stay visible at stride 8.

Appearance is mirror-symmetric: a left forearm looks like a right one and a left hand is the mirror image of a
right hand. Horizontal-flip augmentation (which swaps the left/right labels) therefore stays consistent, and
left versus right follows from the facing (the face is always shown) and from hand chirality (palms to the
viewer, thumbs lateral), as in real people. Every keypoint sits on a drawn mark: a ringed dot at each body
joint, dots at finger joints and face landmarks, so each labelled point has evidence in the image.

Drawing writes the colour image and, in step, an id map (``1 + person * 64 + part``) from which the scene
decides which keypoints are hidden behind other people or the person's own limbs.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from src.core.skeleton import BODY_135

HEAD_R = 0.09  # head half-height (chin to crown) in person heights; anatomy is about 0.06
HAND_LEN = 0.16  # wrist to middle fingertip; anatomy is about 0.108
PARTS_PER_PERSON = 64
_K = BODY_135.index
_FOOT, _FACE70 = BODY_135.group_slice("foot"), BODY_135.group_slice("face")  # face: iBUG 68 + pupils
_HANDS = slice(BODY_135.groups["lhand"].start, BODY_135.groups["rhand"].stop)  # left hand, then right
TORSO, NECK, HEAD, UARM, FARM, PALM, FINGER, THIGH, SHIN, FOOT = 0, 1, 2, 3, 5, 7, 9, 19, 21, 23

# keypoint -> the part whose drawing carries it (sided parts: left, then right = left + 1; fingers 5 per hand)
KP_PART = np.full(BODY_135.num_keypoints, HEAD, np.int32)
KP_PART[5:17] = np.array([UARM, FARM, PALM, THIGH, SHIN, FOOT]).repeat(2) + np.tile([0, 1], 6)
KP_PART[_K("UpperNeck")] = NECK
KP_PART[19:22], KP_PART[22:25] = FOOT, FOOT + 1
KP_PART[_HANDS] = FINGER + np.arange(40) // 4

# hand template in hand lengths, (along the hand, toward the thumb): finger bases (thumb: its CMC joint),
# base angles toward the thumb, segment lengths
_FINGER_BASE = np.array([[0.10, 0.10], [0.42, 0.13], [0.45, 0.04], [0.43, -0.05], [0.38, -0.13]])
_FINGER_ANGLE = np.array([0.95, 0.12, 0.0, -0.12, -0.26])
_FINGER_SEGS = np.array([[0.16, 0.13, 0.11], [0.22, 0.14, 0.12], [0.25, 0.16, 0.13], [0.23, 0.15, 0.12],
                         [0.18, 0.11, 0.10]])
_PALM = np.array([[-0.05, 0.12], [0.1, 0.14], [0.42, 0.18], [0.48, 0.04], [0.44, -0.1], [0.38, -0.17],
                  [-0.05, -0.12]])


def _face_template() -> dict[str, np.ndarray]:
    """The fixed parts of the face in head units (half-height 1, x to the person's left): iBUG contour, nose
    bridge, eye-contour angles, skin outline, hair cap, ears, crown and upper neck."""
    t = np.pi + 0.12 - np.arange(17) * (np.pi + 0.24) / 16  # right ear level, chin, left ear level
    contour = np.stack([0.78 * np.cos(t), np.sin(t)], 1)
    contour[:, 0] *= 1 - 0.18 * np.clip(contour[:, 1], 0, 1)  # narrower jaw
    top = np.linspace(0.12, np.pi - 0.12, 15)  # forehead arc closing the skin outline
    h = np.linspace(-0.25, np.pi + 0.25, 17)
    return {
        "contour": contour,
        "skin": np.concatenate([contour, np.stack([0.78 * np.cos(top), -np.sin(top)], 1)]),
        "hair": np.concatenate([np.stack([0.86 * np.cos(h), -1.1 * np.sin(h)], 1),
                                np.stack([0.8 * np.cos(h[::-1]), -0.62 * np.sin(h[::-1]) - 0.05], 1)]),
        "nose_up": np.stack([np.zeros(4), np.linspace(-0.22, 0.16, 4)], 1),
        "nose_low": np.stack([np.linspace(-0.15, 0.15, 5), 0.24 + 0.04 * np.cos(np.linspace(-1.3, 1.3, 5))],
                             1),
        "eye_angles": np.array([np.pi, 2 * np.pi / 3, np.pi / 3, 0, -np.pi / 3, -2 * np.pi / 3]),
        "outer_angles": np.pi - np.arange(12) * np.pi / 6, "inner_angles": np.pi - np.arange(8) * np.pi / 4,
        "depth": np.r_[np.zeros(17), np.full(10, 0.15), [0.2, 0.25, 0.3, 0.35], np.full(5, 0.3),
                       np.full(12, 0.15), np.full(20, 0.2), [0.15, 0.15]],
        # LEar, REar, crown, upper neck
        "extra": np.array([[0.84, -0.02], [-0.84, -0.02], [0.0, -1.1], [0.0, 1.25]]),
    }


_FACE = _face_template()
_MIRROR = np.array([-1.0, 1.0])

# fixed mark colours (BGR), identical on both sides
DOT = {"shoulder": (0, 220, 255), "elbow": (255, 0, 255), "wrist": (255, 255, 0), "hip": (0, 140, 255),
       "knee": (0, 230, 0), "ankle": (255, 90, 0), "neck": (160, 0, 160), "crown": (255, 255, 255),
       "big_toe": (255, 255, 255), "small_toe": (120, 255, 160), "heel": (0, 0, 255)}
FINGER_COLOURS = [(40, 40, 230), (30, 170, 250), (40, 220, 220), (60, 200, 60), (230, 120, 40)]
JOINT_SHADES = [(40, 40, 40), (110, 110, 110), (190, 190, 190), (255, 255, 255)]
FACE_DOTS = [(slice(0, 17), (255, 255, 255)), (slice(17, 27), (0, 220, 255)), (slice(27, 36), (0, 0, 160)),
             (slice(36, 48), (200, 80, 0)), (slice(48, 68), (255, 255, 255))]
SKINS = [(190, 210, 240), (140, 180, 225), (100, 140, 190), (70, 100, 140), (170, 200, 230)]
SHIFT = 4  # cv2 fixed-point bits: sub-pixel accurate drawing
ONE = 1 << SHIFT


def _dir(angle: np.ndarray) -> np.ndarray:
    """Unit vectors at ``angle`` from straight down, turning toward +x (the left side's lateral)."""
    return np.stack([np.sin(angle), np.cos(angle)], -1)


def _rotate(v: np.ndarray, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return v @ np.array([[c, s], [-s, c]])


def _face(r: np.ndarray) -> np.ndarray:
    """The 70 face points in head units from 7 uniforms: brow height, eye opening, mouth width and opening,
    gaze (2) and a slight turn (features slide sideways with their depth)."""
    brow_y, eye_open, mw, mouth_open = -0.45 + 0.12 * r[0], 0.6 + 0.6 * r[1], 0.22 + 0.08 * r[2], 0.12 * r[3]
    bx = np.linspace(-0.62, -0.12, 5)
    r_brow = np.stack([bx, brow_y - 0.07 * np.sin(np.linspace(0.3, 2.8, 5))], 1)
    a = _FACE["eye_angles"]
    r_eye = np.stack([-0.33 + 0.14 * np.cos(a), -0.12 - 0.065 * eye_open * np.sin(a)], 1)
    ao, ai = _FACE["outer_angles"], _FACE["inner_angles"]
    o_mouth = np.stack([mw * np.cos(ao),
                        0.52 - np.where(np.sin(ao) > 0, 0.08, 0.1 + mouth_open) * np.sin(ao)], 1)
    i_mouth = np.stack([0.7 * mw * np.cos(ai),
                        0.52 - np.where(np.sin(ai) > 0, 0.025, 0.025 + mouth_open) * np.sin(ai)], 1)
    l_eye = r_eye[[3, 2, 1, 0, 5, 4]] * _MIRROR
    pupils = np.stack([r_eye.mean(0), l_eye.mean(0)]) + 0.08 * (r[4:6] - 0.5)
    pts = np.concatenate([_FACE["contour"], r_brow, (r_brow * _MIRROR)[::-1], _FACE["nose_up"],
                          _FACE["nose_low"], r_eye, l_eye, o_mouth, i_mouth, pupils])
    pts[:, 0] += 0.4 * (r[6] - 0.5) * _FACE["depth"]
    return pts


def _hands(rng: np.random.Generator, wrist: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two left hands (canonical frame) at ``wrist`` [2, 2] pointing along ``u`` [2, 2], palms to the viewer,
    thumbs lateral: finger joints [2, 20, 2] and palm outlines [2, 7, 2], in person heights."""
    n = np.stack([u[:, 1], -u[:, 0]], 1)  # toward the thumb
    spread = np.concatenate([rng.uniform(0.6, 1.4, (2, 1)), rng.uniform(0.4, 1.8, (2, 1)).repeat(4, 1)], 1)
    curl = rng.uniform(0, 0.7, (2, 5, 1))
    turn = rng.uniform(-0.12, 0.12, (2, 5, 3)) + np.r_[0.1, 0, 0, 0, 0][:, None] * curl
    angle = (_FINGER_ANGLE * spread)[..., None] + np.cumsum(turn, 2)
    seg = (_FINGER_SEGS * (1 - 0.55 * curl))[..., None] * np.stack([np.cos(angle), np.sin(angle)], -1)
    local = np.concatenate([np.broadcast_to(_FINGER_BASE[None, :, None], (2, 5, 1, 2)),
                            _FINGER_BASE[None, :, None] + np.cumsum(seg, 2)], 2).reshape(2, 20, 2)
    to_px = lambda q: wrist[:, None] + HAND_LEN * (q[..., :1] * u[:, None] + q[..., 1:] * n[:, None])  # noqa
    return to_px(local), to_px(np.broadcast_to(_PALM, (2, 7, 2)))


def sample_pose(rng: np.random.Generator) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Body-frame keypoints [135, 2] and outlines of one randomly posed person (standing height about 1).
    Both sides are built as left limbs (row 0 left, row 1 right) and the right one mirrored in x."""
    r = rng.random((2, 11))
    thigh = -0.12 + 0.57 * r[:, 0]
    shin = thigh - 0.35 + 0.65 * r[:, 1]
    hip = np.array([0.085, 0.02])
    knee = hip + 0.215 * (0.85 + 0.15 * r[:, 2, None]) * _dir(thigh)
    ankle = knee + 0.205 * (0.85 + 0.15 * r[:, 3, None]) * _dir(shin)
    fd, down = _dir(shin + 0.9 + 0.7 * r[:, 4]), _dir(shin)
    sole = ankle + 0.03 * down
    toes = np.stack([sole + 0.13 * fd + 0.005 * down, sole + 0.1 * fd - 0.03 * down,
                     ankle + 0.045 * down - 0.03 * fd], 1)
    shoulder = np.array([0.125, -0.265])
    arm = np.where(r[:, 5] < 0.6, -0.3 + 1.7 * r[:, 6], 1.4 + 1.5 * r[:, 6])
    fore = arm - 2.0 + 3.5 * r[:, 7]
    elbow = shoulder + 0.15 * (0.75 + 0.25 * r[:, 8, None]) * _dir(arm)
    wrist = elbow + 0.135 * (0.75 + 0.25 * r[:, 9, None]) * _dir(fore)
    fingers, palms = _hands(rng, wrist, _dir(fore - 0.6 + 1.2 * r[:, 10]))
    side = np.array([[1.0, 1.0], [-1.0, 1.0]])[:, None]  # mirror the second row
    kp = np.zeros((BODY_135.num_keypoints, 2))
    kp[5:17] = (np.stack([np.broadcast_to(shoulder, (2, 2)), elbow, wrist, np.broadcast_to(hip, (2, 2)), knee,
                          ankle], 1) * side).transpose(1, 0, 2).reshape(12, 2)
    kp[_FOOT] = (toes * side).reshape(6, 2)
    kp[_HANDS] = (fingers * side).reshape(40, 2)
    feet = np.stack([ankle - 0.025 * fd, toes[:, 2], toes[:, 0], toes[:, 1], ankle + 0.02 * fd], 1) * side
    f = rng.random(10)
    roll, lean = 0.15 * rng.standard_normal(), 0.08 * rng.standard_normal()
    neck_base = np.array([0.0, -0.29])
    upper_neck = neck_base + 0.05 * _rotate(np.array([0.0, -1.0]), roll * 0.5)
    centre = upper_neck - HEAD_R * _rotate(_FACE["extra"][3], roll)
    head = lambda q: centre + HEAD_R * _rotate(q, roll)  # noqa: E731
    kp[_FACE70] = head(_face(f))
    kp[BODY_135.indices(["LEar", "REar", "HeadTop"])] = head(_FACE["extra"][:3])
    kp[_K("Nose")], kp[_K("LEye")], kp[_K("REye")] = kp[_K("NoseUpper3")], kp[_K("LPupil")], kp[_K("RPupil")]
    kp[_K("UpperNeck")] = upper_neck
    upper = np.r_[0:_K("LHip"), BODY_135.groups["mpii"], _HANDS.start:_FACE70.stop]  # not hips, legs, feet
    kp[upper] = _rotate(kp[upper], lean)  # the upper body turns about the pelvis
    torso = np.array([[-0.14, -0.285], [0.14, -0.285], [0.11, 0.06], [-0.11, 0.06]])
    torso[:2] = _rotate(torso[:2], lean)
    shapes = {"palm0": _rotate(palms[0], lean), "palm1": _rotate(palms[1] * _MIRROR, lean),
              "foot0": feet[0], "foot1": feet[1], "torso": torso,
              "skin": _rotate(head(_FACE["skin"]), lean), "hair": _rotate(head(_FACE["hair"]), lean),
              "neck_base": _rotate(neck_base, lean)[None]}
    return kp, shapes


@dataclass
class Figure:
    """A posed person in image pixels: ``kp`` [135, 2], drawing outlines, height and colours."""

    kp: np.ndarray
    shapes: dict
    height: float
    colours: dict


def place(rng: np.random.Generator, kp: np.ndarray, shapes: dict, height: float, angle: float,
          anchor: np.ndarray, at: np.ndarray) -> Figure:
    """Scale a body-frame pose to ``height`` px, rotate it by ``angle`` about body point ``anchor``, put that
    point at pixel ``at``, and pick the person's colours."""
    move = lambda q: at + height * _rotate(np.asarray(q) - anchor, angle)  # noqa: E731
    shirt, trousers, hair = rng.integers(30, 230, 3), rng.integers(20, 200, 3), rng.integers(10, 90, 3)
    colours = {"skin": SKINS[rng.integers(len(SKINS))], "shirt": shirt, "sleeve": 0.7 * shirt,
               "trousers": trousers, "shin": np.minimum(255, 1.3 * trousers + 20), "hair": hair,
               "shoe": (35, 35, 50)}
    colours = {k: tuple(int(c) for c in v) for k, v in colours.items()}
    return Figure(move(kp), {k: move(v) for k, v in shapes.items()}, float(height), colours)


class Canvas:
    """The colour image and the id map, drawn in step in cv2 fixed point (``ONE`` units per pixel)."""

    def __init__(self, img: np.ndarray):
        self.img = img
        self.ids = np.zeros(img.shape[:2], np.uint16)
        self._pixels: list[tuple[np.ndarray, tuple, np.ndarray]] = []

    def line(self, a, b, width: float, colour, pid: int) -> None:
        w = max(1, round(width))
        cv2.line(self.img, a, b, colour, w, cv2.LINE_AA, SHIFT)
        cv2.line(self.ids, a, b, pid, w, cv2.LINE_8, SHIFT)

    def chain(self, pts: np.ndarray, width: float, colour, pid: int) -> None:
        w = max(1, round(width))
        cv2.polylines(self.img, [pts], False, colour, w, cv2.LINE_AA, SHIFT)
        cv2.polylines(self.ids, [pts], False, pid, w, cv2.LINE_8, SHIFT)

    def poly(self, pts: np.ndarray, colour, pid: int, edge=None, edge_width: float = 1) -> None:
        cv2.fillPoly(self.img, [pts], colour, cv2.LINE_AA, SHIFT)
        cv2.fillPoly(self.ids, [pts], pid, cv2.LINE_8, SHIFT)
        if edge is not None:
            w = max(1, round(edge_width))
            cv2.polylines(self.img, [pts], True, edge, w, cv2.LINE_AA, SHIFT)
            cv2.polylines(self.ids, [pts], True, pid, w, cv2.LINE_8, SHIFT)

    def curve(self, pts: np.ndarray, width: float, colour) -> None:
        cv2.polylines(self.img, [pts], False, colour, max(1, round(width)), cv2.LINE_AA, SHIFT)

    def dots(self, pts: np.ndarray, radius: float, colour, ring=None, pid: int | np.ndarray = 0) -> None:
        """Marks at keypoints, colour image only (the part below, ``pid``, already owns these pixels in the id
        map). Below one pixel a mark is that pixel, set by ``finish`` where ``pid`` is still on top."""
        pts = pts.reshape(-1, 2)
        if radius < 1:
            self._pixels.append((pts, colour, np.broadcast_to(pid, len(pts))))
            return
        r = round(radius * ONE)
        for p in pts.tolist():
            if ring is not None:
                cv2.circle(self.img, p, r + ONE, ring, -1, cv2.LINE_AA, SHIFT)
            cv2.circle(self.img, p, r, colour, -1, cv2.LINE_AA, SHIFT)


    def finish(self) -> None:
        """Set the one-pixel marks whose part was not drawn over afterwards."""
        if not self._pixels:
            return
        pts = np.concatenate([p for p, _, _ in self._pixels])
        colour = np.repeat([c for _, c, _ in self._pixels], [len(p) for p, _, _ in self._pixels], 0)
        pid = np.concatenate([i for _, _, i in self._pixels])
        x, y = (pts + ONE // 2).T >> SHIFT
        h, w = self.ids.shape
        ok = (x >= 0) & (y >= 0) & (x < w) & (y < h)
        ok[ok] = self.ids[y[ok], x[ok]] == pid[ok]
        self.img[y[ok], x[ok]] = colour[ok]
        self._pixels = []


def _fx(p: np.ndarray) -> np.ndarray:
    return np.rint(p * ONE).astype(np.int32)


def draw(canvas: Canvas, fig: Figure, person: int, rng: np.random.Generator) -> None:
    """Draw ``fig`` back to front: torso, legs and feet, neck, head and face, then both arms and hands."""
    kpf, height, col = _fx(fig.kp), fig.height, fig.colours
    kp = kpf.tolist()
    sh = {k: _fx(v) for k, v in fig.shapes.items()}
    base = 1 + person * PARTS_PER_PERSON
    dot_r, black = max(1.2, 0.014 * height), (0, 0, 0)
    canvas.poly(sh["torso"], col["shirt"], base + TORSO)
    for s in (0, 1):
        canvas.line(kp[11 + s], kp[13 + s], 0.065 * height, col["trousers"], base + THIGH + s)
        canvas.dots(kpf[11 + s], dot_r, DOT["hip"], black)
        canvas.line(kp[13 + s], kp[15 + s], 0.05 * height, col["shin"], base + SHIN + s)
        canvas.dots(kpf[13 + s], dot_r, DOT["knee"], black)
        canvas.poly(sh[f"foot{s}"], col["shoe"], base + FOOT + s, col["shoe"], 0.02 * height)
        for k, name in ((15 + s, "ankle"), (19 + 3 * s, "big_toe"), (20 + 3 * s, "small_toe"),
                        (21 + 3 * s, "heel")):
            canvas.dots(kpf[k], 0.85 * dot_r, DOT[name], black)
    neck = _K("UpperNeck")
    canvas.line(sh["neck_base"][0].tolist(), kp[neck], 0.05 * height, col["skin"], base + NECK)
    canvas.dots(kpf[neck], dot_r, DOT["neck"], black)
    _draw_head(canvas, kpf, sh, HEAD_R * height, col, base + HEAD)
    for s in rng.permutation(2).tolist():
        canvas.line(kp[5 + s], kp[7 + s], 0.05 * height, col["sleeve"], base + UARM + s)
        canvas.dots(kpf[5 + s], dot_r, DOT["shoulder"], black)
        canvas.line(kp[7 + s], kp[9 + s], 0.042 * height, col["skin"], base + FARM + s)
        canvas.dots(kpf[7 + s], dot_r, DOT["elbow"], black)
        length = HAND_LEN * height
        canvas.poly(sh[f"palm{s}"], col["skin"], base + PALM + s, (60, 80, 120), 0.025 * length)
        canvas.dots(kpf[9 + s], max(1.0, 0.06 * length), DOT["wrist"], black)
        joints = kpf[BODY_135.group_slice(("lhand", "rhand")[s])].reshape(5, 4, 2)
        for f in range(5):
            canvas.chain(joints[f], 0.075 * length, FINGER_COLOURS[f], base + FINGER + 5 * s + f)
        ringed, fingers = 0.03 * length >= 2, base + FINGER + 5 * s + np.arange(5)  # no ring on thin fingers
        for j in range(4):  # base, middle, last joint, tip: one shade each
            ring = ((255, 255, 255) if j == 0 else black) if ringed else None
            canvas.dots(joints[:, j], 0.03 * length, JOINT_SHADES[j], ring, fingers)


def _draw_head(canvas: Canvas, kpf: np.ndarray, sh: dict, r: float, col: dict, pid: int) -> None:
    """Ears, skin with a jaw outline, hair, brows, nose, eyes with pupils, mouth, and a dot per landmark."""
    for ear in BODY_135.indices(["LEar", "REar"]):
        canvas.line(kpf[ear].tolist(), kpf[ear].tolist(), 0.22 * r, (120, 120, 210), pid)
    dark, w = (40, 30, 60), max(1, 0.05 * r)
    canvas.poly(sh["skin"], col["skin"], pid, (60, 70, 110), w)
    canvas.poly(sh["hair"], col["hair"], pid, col["hair"], 0.06 * r)
    f = kpf[_FACE70]  # iBUG 68 face indices from here on, then the pupils (68, 69)
    canvas.curve(f[17:22], 2 * w, dark)
    canvas.curve(f[22:27], 2 * w, dark)
    canvas.curve(f[27:31], w, (80, 100, 150))
    canvas.curve(f[31:36], w, (80, 100, 150))
    for eye in (f[36:42], f[42:48]):
        canvas.poly(eye, (250, 250, 250), pid, dark, w)
    canvas.poly(f[48:60], (60, 60, 200), pid)
    canvas.poly(f[60:68], (40, 20, 90), pid)
    canvas.dots(f[68:70], 0.06 * r, (120, 60, 20), (20, 20, 20), pid)
    for part, colour in FACE_DOTS:
        canvas.dots(f[part], 0.025 * r, colour, None, pid)
    canvas.dots(kpf[BODY_135.indices(["LEar", "REar"])], 0.06 * r, (60, 60, 160), None, pid)
    canvas.dots(kpf[_K("HeadTop")], 0.06 * r, DOT["crown"], (0, 0, 0), pid)
