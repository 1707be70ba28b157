"""The synthetic whole-body world: procedurally drawn people as shard records, the default source set.

Five kinds mirror the real training mixture (spec §4.1):

==================  ==========================================================  ===========================
kind                scene                                                       groups labelled (train)
==================  ==========================================================  ===========================
synth_body          1-4 people, 100-250 px tall                                 body, foot
synth_face          a face close-up (head 80-200 px), sometimes a second one     face (+ nose, eyes)
synth_hand          a hand close-up (wrist to fingertip 80-200 px), 1-2 hands   lhand, rhand (+ wrists)
synth_wholebody     1-3 people, 120-250 px tall                                 all six groups
synth_background    textures and distractor shapes, nobody                      all six groups
==================  ==========================================================  ===========================

Validation splits label every group. People are drawn back to front over a textured background (smooth colour
fields, stripes, blobs, checks, grain, straight-edged distractors); a point is visible (code 1) when its own
drawn part shows at its pixel, and code 2 when another person or the person's own limb hides it or it lies
outside the image (coordinates 0). Points a kind does not label are code 4. A person with pixels in the image
but no visible labelled point is dropped and its silhouette goes into the ignore mask.

Every record is seeded from (seed, kind, split, index), so any sample can be regenerated alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from sharding.people import ignore_png
from sharding.synthetic_figure import (
    HAND_LEN,
    HEAD_R,
    KP_PART,
    PARTS_PER_PERSON,
    Canvas,
    Figure,
    draw,
    place,
    sample_pose,
)
from src.core.record import Record
from src.core.skeleton import BODY_135

ALL_GROUPS = list(BODY_135.groups)
KINDS: dict[str, tuple[int, list[str]]] = {  # kind -> (id used in image ids, groups labelled in train)
    "synth_body": (1, ["body", "foot"]),
    "synth_face": (2, ["face"]),
    "synth_hand": (3, ["lhand", "rhand"]),
    "synth_wholebody": (4, ALL_GROUPS),
    "synth_background": (5, ALL_GROUPS),
}
SPLIT_IDS = {"train": 0, "val": 1}
MAX_INDEX = 5_000_000  # image_id = kind * 1e7 + split * 5e6 + index + 1 stays unique and fits in int32
JPEG_QUALITY = 95
_NEAR = np.mgrid[-1:2, -1:2].reshape(2, 9)  # a pixel and its 8 neighbours
AREA_PER_BOX = 0.53  # person area = 0.53 x box area, the COCO evaluator's rule when no segmentation is used


@dataclass
class Scene:
    """One rendered sample: image and the same image without people (BGR), meta people, the pixel positions
    of all 135 points of each of those people (hidden ones included), and the ignore mask."""

    image: np.ndarray
    background: np.ndarray
    groups: list[str]
    people: list[dict]
    positions: list[np.ndarray]
    ignore: np.ndarray | None


def _check(kind: str, split: str, index: int, seed: int, size: int) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown synthetic kind {kind!r}; expected one of {sorted(KINDS)}")
    if split not in SPLIT_IDS:
        raise ValueError(f"unknown split {split!r} for {kind}; expected one of {sorted(SPLIT_IDS)}")
    if not 0 <= index < MAX_INDEX:
        raise ValueError(f"{kind}/{split}: index {index} outside [0, {MAX_INDEX})")
    if seed < 0:
        raise ValueError(f"{kind}/{split}: seed must be >= 0, got {seed}")
    if size < 64:
        raise ValueError(f"{kind}/{split}: image size must be >= 64 px, got {size}")


@lru_cache(maxsize=4)
def _grain(size: int) -> np.ndarray:
    """A fixed grey noise field (uint8, mean 128), twice the image size, cropped at random offsets."""
    noise = np.random.default_rng(0).normal(128, 32, (2 * size, 2 * size, 1)).clip(0, 255).astype(np.uint8)
    return np.repeat(noise, 3, 2)


@lru_cache(maxsize=4)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    return np.meshgrid(np.arange(size, dtype=np.float32), np.arange(size, dtype=np.float32))


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A textured, people-free image: colour field, stripes, blobs or checks (drawn at half resolution),
    muted, plus full-resolution grain and straight-edged distractors."""
    half = size // 2
    style = rng.integers(4)
    c1, c2 = rng.integers(0, 256, (2, 3)).astype(np.float32)
    if style == 0:
        low = rng.integers(0, 256, (rng.integers(2, 6), rng.integers(2, 6), 3)).astype(np.float32)
        img = cv2.resize(low, (half, half), interpolation=cv2.INTER_LINEAR)
    elif style in (1, 3):
        x, y = _grid(half)
        a, period = rng.uniform(0, np.pi), rng.uniform(4, 24)
        ca, sa = np.float32(np.cos(a) / period), np.float32(np.sin(a) / period)
        t = x * ca + y * sa
        if style == 3:
            s = (np.floor(t) + np.floor(y * ca - x * sa)) % 2
        else:
            s = np.float32(0.5) + np.float32(0.5) * np.sin(np.float32(2 * np.pi) * t)
        img = c1 + s[..., None] * (c2 - c1)
    else:
        img = np.empty((half, half, 3), np.float32)
        img[:] = c1
        for _ in range(rng.integers(4, 12)):
            centre = tuple(int(v) for v in rng.integers(0, half, 2))
            axes = tuple(int(v) for v in rng.integers(half // 16, half // 3, 2))
            cv2.ellipse(img, centre, axes, float(rng.uniform(0, 180)), 0, 360,
                        tuple(float(v) for v in rng.integers(0, 256, 3)), -1)
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.5, 3))
    mute = np.float32(rng.uniform(0.35, 1.0))  # lower contrast: figures should stand out
    img = img * mute + np.array(cv2.mean(img)[:3], np.float32) * (1 - mute)
    img = cv2.resize(cv2.convertScaleAbs(img), (size, size), interpolation=cv2.INTER_LINEAR)
    ox, oy = rng.integers(0, size, 2)
    amp = rng.uniform(0.05, 0.4)
    img = cv2.addWeighted(img, 1.0, _grain(size)[oy:oy + size, ox:ox + size], amp, -128 * amp)
    for _ in range(rng.integers(0, 6)):  # clutter with straight edges: nothing joint-like
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        p, q = rng.integers(-size // 4, size + size // 4, (2, 2))
        if rng.random() < 0.6:
            cv2.line(img, tuple(int(v) for v in p), tuple(int(v) for v in q), colour,
                     int(rng.integers(1, 10)), cv2.LINE_AA)
        else:
            cv2.rectangle(img, tuple(int(v) for v in p), tuple(int(v) for v in q), colour, -1)
    return img


def _crowd(rng: np.random.Generator, size: int, counts: list[float], low: float, high: float) -> list[Figure]:
    """People standing side by side (stratified positions), smaller ones farther away (drawn first)."""
    n = int(rng.choice(len(counts), p=counts)) + 1
    heights = np.sort(rng.uniform(low, high, n))
    slots = (rng.permutation(n) + rng.uniform(0.25, 0.75, n)) / n * size
    figures = []
    for h, x in zip(heights, slots, strict=True):
        kp, shapes = sample_pose(rng)
        lo, hi = 0.41 * h, size - 0.36 * h  # head and feet may leave the image by about 12% of the height
        y = rng.uniform(lo, hi) if lo < hi else (lo + hi) / 2
        angle = float(np.clip(rng.normal(0, 0.25), -0.6, 0.6))
        figures.append(place(rng, kp, shapes, h, angle, np.zeros(2), np.array([x, y])))
    return figures


def _close_ups(rng: np.random.Generator, size: int, part: str) -> list[Figure]:
    """One (sometimes two) people so near that a head or one hand of 80-200 px fills the view."""
    n = 2 if rng.random() < (0.3 if part == "hand" else 0.25) else 1
    figures = []
    for i in range(n):
        kp, shapes = sample_pose(rng)
        extent = rng.uniform(80, 200) * (0.7 if i < n - 1 else 1.0)  # the farther one is smaller
        if part == "face":
            height, anchor = extent / (2 * HEAD_R), kp[BODY_135.indices(["UpperNeck", "HeadTop"])].mean(0)
            angle = float(np.clip(rng.normal(0, 0.3), -0.8, 0.8))
        else:
            side = rng.integers(2)
            height, anchor = extent / HAND_LEN, kp[BODY_135.hand(("left", "right")[side])].mean(0)
            angle = float(rng.uniform(-np.pi, np.pi))
        at = rng.uniform(0.3, 0.7, 2) * size if n == 1 else np.array(
            [rng.uniform(0.2, 0.45) if i == 0 else rng.uniform(0.55, 0.8), rng.uniform(0.3, 0.7)]) * size
        figures.append(place(rng, kp, shapes, height, angle, anchor, at))
    return figures


def _people_meta(ids: np.ndarray, figures: list[Figure], groups: list[str], image_id: int, size: int
                 ) -> tuple[list[dict], list[np.ndarray], np.ndarray | None]:
    """Label codes from the id map; box, area, centre and scale per person. Returns the people, their
    points' pixel positions and the ignore mask."""
    labelled = BODY_135.labelled(groups)
    owner = (ids + (PARTS_PER_PERSON - 1)) // PARTS_PER_PERSON  # person + 1, 0 where nobody is drawn
    ignore = np.zeros((size, size), bool)
    people, positions = [], []
    for j, fig in enumerate(figures):
        mask = owner == j + 1
        x, y, w, h = cv2.boundingRect(mask.view(np.uint8))
        if w == 0:
            continue
        xy = fig.kp
        inside = (xy >= 0).all(1) & (xy <= size - 1).all(1)
        xi, yi = np.clip(np.rint(xy), 1, size - 2).astype(np.int64).T
        own = 1 + j * PARTS_PER_PERSON + KP_PART
        seen = (ids[yi[:, None] + _NEAR[0], xi[:, None] + _NEAR[1]] == own[:, None]).any(1)  # point or beside
        visible = inside & seen & labelled
        if not visible.any():
            ignore |= mask
            continue
        kp = np.zeros((BODY_135.num_keypoints, 3))
        kp[:, 2] = np.where(labelled, 2, 4)
        kp[visible, :2], kp[visible, 2] = xy[visible], 1
        people.append({
            "id": image_id * 20 + j,
            "keypoints": [[a, b, int(v)] for a, b, v in kp.round(2).tolist()],
            "bbox": [float(x), float(y), float(w), float(h)],
            "area": round(AREA_PER_BOX * w * h, 2),
            "center": [x + w / 2, y + h / 2],
            "scale": round(fig.height, 2),
        })
        positions.append(xy)
    if ignore.any():
        ignore = cv2.dilate(ignore.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    return people, positions, (ignore if ignore.any() else None)


def image_id(kind: str, split: str, index: int) -> int:
    """Unique over kinds and splits: kind * 10^7 + split * 5 * 10^6 + index + 1."""
    return KINDS[kind][0] * 10_000_000 + SPLIT_IDS[split] * MAX_INDEX + index + 1


def render(kind: str, split: str, index: int, seed: int, size: int = 256) -> Scene:
    """Draw sample ``index`` of ``kind``/``split``; a pure function of its arguments."""
    _check(kind, split, index, seed, size)
    rng = np.random.default_rng([seed, KINDS[kind][0], SPLIT_IDS[split], index])
    groups = KINDS[kind][1] if split == "train" else ALL_GROUPS
    background = _background(rng, size)
    if kind in ("synth_body", "synth_wholebody"):
        figures = (_crowd(rng, size, [0.2, 0.35, 0.3, 0.15], 100, 250) if kind == "synth_body"
                   else _crowd(rng, size, [0.35, 0.4, 0.25], 120, 250))
    elif kind in ("synth_face", "synth_hand"):
        figures = _close_ups(rng, size, kind[6:])
    else:
        figures = []
    canvas = Canvas(background.copy())
    for j, fig in enumerate(figures):
        draw(canvas, fig, j, rng)
    canvas.finish()
    people, positions, ignore = _people_meta(canvas.ids, figures, groups, image_id(kind, split, index), size)
    alpha, beta = rng.uniform(0.85, 1.15), rng.uniform(-20, 20)  # exposure
    image, background = (cv2.convertScaleAbs(im, alpha=alpha, beta=beta) for im in (canvas.img, background))
    return Scene(image, background, groups, people, positions, ignore)


def record(kind: str, split: str, index: int, seed: int, size: int = 256) -> Record:
    """Sample ``index`` as a shard ``Record`` (JPEG quality 95; the ignore mask as PNG when present)."""
    scene = render(kind, split, index, seed, size)
    key = f"{kind}-{split}-{index:07d}"
    ok, jpg = cv2.imencode(".jpg", scene.image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    meta = {"image_id": image_id(kind, split, index), "file_name": f"{key}.jpg", "width": size,
            "height": size, "source": kind, "groups": list(scene.groups), "people": scene.people}
    return Record(key=key, image=jpg.tobytes(), ext="jpg", meta=meta, ignore_png=ignore_png(scene.ignore))


def iter_records(kind: str, split: str, count: int, seed: int, size: int = 256) -> Iterator[Record]:
    """Records 0..count-1 of ``kind``/``split``, each independently seeded (see ``record``). Arguments are
    checked here, before the first record is drawn."""
    _check(kind, split, 0, seed, size)
    if not 0 <= count <= MAX_INDEX:
        raise ValueError(f"{kind}/{split}: count must be in [0, {MAX_INDEX}], got {count}")
    return (record(kind, split, index, seed, size) for index in range(count))
