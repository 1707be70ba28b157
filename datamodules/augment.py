"""Per-source training augmentation (spec §4.3) as one albumentations pipeline, and the validation sample.

Coordinates: pixel centres are integers (cv2's convention), so a horizontal flip maps ``x -> S - 1 - x`` as
albumentations does. Keypoints are ``[P, K, 3]`` (K of the shards' layout) ``(x, y, v)`` with the codes of
``src.core.skeleton``.

The geometry is a single affine ``M`` (scale, rotation, crop offset and flip composed) computed by
``PersonAffine`` from the sample's people, so image, ignore mask and keypoints are resampled once with the
same matrix. The released recipe, scaled to any crop ``S`` (the spec's numbers are for ``S = 480``):

* scale: the centre person's full height (meta ``scale``) becomes ``0.6 * S * m`` px (288*m at 480),
  ``m ~ U[policy range]`` (policy ``image``: the image's height becomes ``S * m`` instead);
* centre: the person's centre, moved to a visible wrist (hand policy) or the nose (face policy) when
  ``(m > 2 and u > 0.05) or (m > 1.3 and u > 0.5)``; the wholebody policy takes either rule with p = 0.5;
* rotation ``U[-r, r]`` degrees, r = ``data.rotate`` (45: spec §4.3); crop offset ``U[-40, 40] * S / 480`` px
  per axis; flip with p = ``data.flip`` (0.5);
* padding: the next background image (when the mixture has a background source; ignore mask 0 there), else
  black with the ignore mask at 1 (spec §3.4 step 1).

albumentations 2.0.8 cannot reorder keypoints on a flip, so the flip is read back from the applied params and
the layout's left/right table (``Layout.flip_index``, ``Layout.flip_groups``) is applied here.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # no PyPI request from every loader worker

import albumentations as A  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402

from datamodules.samples import BadSample  # noqa: E402
from src.core.geometry import STRIDE, half_pixel_offset, resize_for_eval  # noqa: E402
from src.core.skeleton import BODY_135, Layout  # noqa: E402

cv2.setNumThreads(1)  # one core per loader worker; cv2's own pool only competes with the other workers

# Scale multiplier ranges m (spec §4.1, §4.5). ``released``: what the released prototxt effectively used (the
# face sets this project reads are iBUG/300W/LFPW/Helen, i.e. the released "face_mask_out" entry, 1/3-2.5;
# CMU Panoptic whole-body stands in for Dome135). ``intended``: the hand/face/Dome ranges the prototxt lists
# but never applies (its scale lists are misaligned): hands 0.5-4.0, face 2/3-4.5, whole-body 2/3-4.5.
# ``paper``: the ranges the paper prints (spec §11.1): [1/3, 1.5] for every source (MPII included) but the
# Dome/whole-body sets [2/3, 4.5] and the MPII hand set [0.5, 4.0] (every hand source here); faces keep
# [1/3, 1.5]: the text says their minimum is lowered, to no printed value, and 2/3 would raise it.
# ``image`` (the project's, for memorising a val set): m scales the whole image, m = 1 putting its height at
# the crop size, i.e. the people at their validation size when ``data.val_size`` equals the crop.
SCALE_RANGES: dict[str, dict[str, tuple[float, float]]] = {
    "released": {"body": (1 / 3, 1.5), "mpii": (1 / 3, 2.5), "hand": (1 / 3, 1.5), "face": (1 / 3, 2.5),
                 "wholebody": (1 / 3, 2.5), "background": (1.0, 1.5), "image": (0.9, 1.1)},
    "intended": {"body": (1 / 3, 1.5), "mpii": (1 / 3, 2.5), "hand": (0.5, 4.0), "face": (2 / 3, 4.5),
                 "wholebody": (2 / 3, 4.5), "background": (1.0, 1.5), "image": (0.9, 1.1)},
    "paper": {"body": (1 / 3, 1.5), "mpii": (1 / 3, 1.5), "hand": (0.5, 4.0), "face": (1 / 3, 1.5),
              "wholebody": (2 / 3, 4.5), "background": (1.0, 1.5), "image": (0.9, 1.1)},
}
POLICIES = tuple(SCALE_RANGES["released"])
CENTRE_SWAP = {"hand": "hand", "face": "face", "wholebody": "either"}
TARGET_HEIGHT = 288 / 480  # fraction of the crop the centre person fills at m = 1
JITTER = 40 / 480  # crop-centre offset, fraction of the crop


@dataclass(frozen=True)
class Policy:
    """How one source is augmented: ``name`` (one of ``POLICIES``) and its scale multiplier range."""

    name: str
    scale: tuple[float, float]
    rotate: float = 45.0
    flip: float = 0.5

    @staticmethod
    def make(name: str, scale_ranges: str = "intended", rotate: float = 45.0, flip: float = 0.5) -> Policy:
        if scale_ranges not in SCALE_RANGES:
            raise ValueError(f"data.scale_ranges must be one of {sorted(SCALE_RANGES)}, got {scale_ranges!r}")
        if name not in POLICIES:
            raise ValueError(f"unknown augmentation policy {name!r}; known: {list(POLICIES)}")
        return Policy(name, SCALE_RANGES[scale_ranges][name], float(rotate), float(flip))


def crop_matrix(centre, height: float, m: float, angle: float, offset, flip: bool, size: int) -> np.ndarray:
    """2x3 affine taking image px to crop px: ``centre`` lands at the crop middle minus ``offset`` after
    scaling ``height`` to ``0.6 * size * m`` and rotating by ``angle`` degrees (counter-clockwise on screen);
    ``flip`` then mirrors the crop (``x -> size - 1 - x``)."""
    s = TARGET_HEIGHT * size * m / max(float(height), 1.0)
    a = math.radians(angle)
    rot = s * np.array([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]])
    mid = (size - 1) / 2
    t = np.array([mid - offset[0], mid - offset[1]]) - rot @ np.asarray(centre, np.float64)
    mat = np.hstack([rot, t[:, None]])
    if flip:
        mat = np.array([[-1.0, 0.0, size - 1.0], [0.0, 1.0, 0.0]]) @ np.vstack([mat, [0, 0, 1]])
    return mat


def covers(matrix: np.ndarray, height: int, width: int, size: int) -> bool:
    """Whether the ``size`` crop of ``matrix`` lies inside the ``height x width`` image with a pixel to spare,
    so that bilinear sampling never reaches past the edge: no padding."""
    inv = cv2.invertAffineTransform(matrix)
    corners = np.array([[0, 0], [size - 1, 0], [0, size - 1], [size - 1, size - 1]], np.float64)
    xy = corners @ inv[:, :2].T + inv[:, 2]
    return bool((xy >= 0).all() and (xy[:, 0] <= width - 2).all() and (xy[:, 1] <= height - 2).all())


class PersonAffine(A.DualTransform):
    """Scale/rotate/crop/flip around a randomly chosen labelled person, as one affine (module docstring).

    Extra inputs (passed to the Compose call): ``people`` = list of ``(centre xy, height px, keypoints
    [K, 3])`` and ``background`` (a callable returning an ``S x S x 3`` uint8 patch to paste where the warp
    has no source pixels, called only when there are such pixels; or None). Applied params hold ``matrix``
    and ``flip``.
    """

    def __init__(self, size: int, policy: Policy, layout: Layout = BODY_135, p: float = 1.0):
        super().__init__(p=p)
        self.size, self.policy = int(size), policy
        present = lambda names: tuple(layout.index(n) for n in names if n in layout.names)  # noqa: E731
        self.centres = {"hand": present(["LWrist", "RWrist"]), "face": present(["Nose"])}
        """The points hand and face sources may centre on (none in a layout without them: no swap)."""

    def get_params_dependent_on_data(self, params: dict, data: dict) -> dict:
        rnd, size, pol = self.py_random, self.size, self.policy
        h, w = params["shape"][:2]
        people = [q for q in data.get("people") or () if (q[2][:, 2] <= 1).any()]
        m = rnd.uniform(*pol.scale)
        if people:
            centre, height, kps = people[rnd.randrange(len(people))]
            centre = self._swap_centre(np.asarray(centre, np.float64), kps, m)
            if pol.name == "image":  # m = 1: the image's height fills the crop (SCALE_RANGES)
                height = TARGET_HEIGHT * h
        else:  # nobody to centre on: the image's middle, its shorter side filling the crop at m = 1
            centre, height = np.array([(w - 1) / 2, (h - 1) / 2]), TARGET_HEIGHT * min(h, w)
        jit = JITTER * size
        offset = (rnd.uniform(-jit, jit), rnd.uniform(-jit, jit))
        angle = rnd.uniform(-pol.rotate, pol.rotate)
        flip = rnd.random() < pol.flip
        matrix = crop_matrix(centre, height, m, angle, offset, flip, size)
        draw = data.get("background")  # a background patch is drawn (decoded) only when the crop has padding
        patch = draw() if draw is not None and not covers(matrix, h, w, size) else None
        return {"matrix": matrix, "flip": flip, "background": patch,
                "fill_mask": 0 if draw is not None else 255}

    def _swap_centre(self, centre: np.ndarray, kps: np.ndarray, m: float) -> np.ndarray:
        """Spec §4.3 step 2: hand and face sources sometimes centre on a visible wrist or the nose."""
        rule = CENTRE_SWAP.get(self.policy.name)
        if rule is None:
            return centre
        rnd = self.py_random
        u = rnd.random()
        if not ((m > 2 and u > 0.05) or (m > 1.3 and u > 0.5)):
            return centre
        if rule == "either":
            rule = "hand" if rnd.random() < 0.5 else "face"
        choices = [k for k in self.centres[rule] if kps[k, 2] <= 1]
        return kps[rnd.choice(choices), :2].astype(np.float64) if choices else centre

    def apply(self, img: np.ndarray, matrix: np.ndarray, background=None, **params) -> np.ndarray:
        s = self.size
        if background is None:
            return cv2.warpAffine(img, matrix, (s, s), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                                  borderValue=0)
        out = np.array(background, order="C")  # the warp writes only where it has source pixels
        cv2.warpAffine(img, matrix, (s, s), dst=out, flags=cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_TRANSPARENT)
        return out

    def apply_to_mask(self, mask: np.ndarray, matrix: np.ndarray, fill_mask: int = 255,
                      **params) -> np.ndarray:
        """At half the crop's resolution: the loss uses the mask only as the ignored fraction of each
        stride-8 cell (``Augment`` area-resizes it), which 4 x 4 samples per cell give as well as 8 x 8, for
        a quarter of the warp. Crop pixel ``u`` is half-resolution pixel ``(u - 0.5) / 2``."""
        half = self.size // 2
        to_half = 0.5 * matrix
        to_half[:, 2] += half_pixel_offset(0.5)
        return cv2.warpAffine(mask, to_half, (half, half), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=fill_mask)

    def apply_to_keypoints(self, keypoints: np.ndarray, matrix: np.ndarray, **params) -> np.ndarray:
        out = keypoints.copy()
        out[:, :2] = keypoints[:, :2] @ matrix[:, :2].T + matrix[:, 2]
        return out

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("size", "policy")


def background_canvas(image: np.ndarray, size: int) -> np.ndarray:
    """Spec §4.3 step 7, first half: a background larger than the crop on both sides is scaled so its shorter
    side is ``size`` (to be cropped by ``background_patch``); any other is resized to ``size x size``."""
    h, w = image.shape[:2]
    if min(h, w) > size:
        f = size / min(h, w)
        return cv2.resize(image, (max(size, round(w * f)), max(size, round(h * f))),
                          interpolation=cv2.INTER_AREA)
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR)


def background_patch(canvas: np.ndarray, size: int, rng) -> np.ndarray:
    """Second half: a random ``size x size`` window of a ``background_canvas``, mirrored with p = 0.5, as a
    C-contiguous array (cv2.flip copies a mirrored window ~40x faster than numpy's negative-stride copy, and
    ``PersonAffine`` copies a contiguous patch with one memcpy)."""
    h, w = canvas.shape[:2]
    y, x = rng.randint(0, h - size), rng.randint(0, w - size)
    patch = canvas[y:y + size, x:x + size]
    return cv2.flip(patch, 1) if rng.random() < 0.5 else np.ascontiguousarray(patch)


class Augment:
    """One source's training augmentation: ``(image, meta, ignore, background) -> sample`` with the crop,
    keypoints ``[P, K, 3]`` of ``layout`` (the shards'), the (possibly mirrored) groups and the ignore
    fraction at stride 8."""

    def __init__(self, policy: Policy, size: int = 480, photometric: float = 0.0, layout: Layout = BODY_135):
        if size % STRIDE:
            raise ValueError(f"data.crop must be a multiple of {STRIDE}, got {size}")
        self.policy, self.size, self.layout = policy, int(size), layout
        steps = [PersonAffine(size, policy, layout)]
        if photometric > 0:
            steps.append(A.OneOf([A.RandomBrightnessContrast(0.2, 0.2), A.HueSaturationValue(8, 15, 10)],
                                 p=photometric))
        self.compose = A.Compose(steps, keypoint_params=A.KeypointParams(format="xy", remove_invisible=False),
                                 save_applied_params=True, strict=False)

    def seed(self, seed: int) -> None:
        self.compose.set_random_seed(seed)

    def __call__(self, image: np.ndarray, meta: dict, ignore: np.ndarray | None = None,
                 background: Callable[[], np.ndarray] | None = None) -> dict:
        """``background``: draws a padding patch (``PersonAffine``); None pads with black, ignored."""
        people, k = meta.get("people") or [], self.layout.num_keypoints
        kps = np.asarray([p["keypoints"] for p in people], np.float32).reshape(-1, k, 3)
        anchors = [(p["center"], p.get("scale") or p["bbox"][3], kps[i]) for i, p in enumerate(people)]
        data = {"image": image, "keypoints": kps[..., :2].reshape(-1, 2), "people": anchors,
                "background": background}
        if ignore is None and background is None:
            ignore = np.zeros(image.shape[:2], np.uint8)  # still needed: the padding is ignored
        if ignore is not None:
            data["mask"] = ignore
        out = self.compose(**data)
        params = dict(out["applied_transforms"])["PersonAffine"]
        if not np.isfinite(params["matrix"]).all():  # NaN/infinite centre or scale: black, unlabelled crop
            raise BadSample(f"sample {meta.get('file_name', '?')!r}: crop affine is not finite (people's "
                            f"centre/scale: {[(list(a[0]), a[1]) for a in anchors][:3]})")
        xy = np.asarray(out["keypoints"], np.float32)[:, :2].reshape(-1, k, 2)
        kps = np.concatenate([xy, kps[..., 2:]], axis=2)
        s = self.size
        lost = ~np.isfinite(xy).all(-1)  # a NaN point is never labelled: background at (0, 0)
        kps[lost, :2] = 0
        outside = lost | (xy < 0).any(-1) | (xy > s - 1).any(-1)
        kps[..., 2] = np.where(outside & (kps[..., 2] <= 1), 2, kps[..., 2])
        groups = list(meta.get("groups") or [])
        if params["flip"]:
            kps, groups = kps[:, self.layout.flip_index], self.layout.flip_groups(groups)
        grid = s // STRIDE
        if "mask" in out:
            small = cv2.resize(out["mask"], (grid, grid), interpolation=cv2.INTER_AREA)
            ign = small.astype(np.float32) / 255.0
        else:
            ign = np.zeros((grid, grid), np.float32)
        return {"image": out["image"], "keypoints": kps, "groups": groups, "ignore": ign,
                "matrix": params["matrix"].astype(np.float32), "flip": bool(params["flip"])}


def eval_sample(image: np.ndarray, meta: dict, ignore: np.ndarray | None, size: int, fit: str = "height",
                num_keypoints: int = 135) -> dict:
    """A validation sample: the image resized by ``src.core.geometry.resize_for_eval`` (the one eval resize),
    its ignore mask (padding ignored) at the stride and its keypoints moved with it."""
    resized = resize_for_eval(image, size, fit)
    (h, w), (nh, nw) = image.shape[:2], resized.input_size
    ph, pw = resized.image.shape[:2]
    stride = STRIDE
    full = np.zeros((h, w), np.uint8) if ignore is None else ignore
    full = cv2.copyMakeBorder(cv2.resize(full, (nw, nh), interpolation=cv2.INTER_LINEAR),
                              0, ph - nh, 0, pw - nw, cv2.BORDER_CONSTANT, value=255)
    ign = cv2.resize(full, (pw // stride, ph // stride), interpolation=cv2.INTER_AREA)
    ign = ign.astype(np.float32) / 255
    people = meta.get("people") or []
    kps = np.asarray([p["keypoints"] for p in people], np.float32).reshape(-1, num_keypoints, 3)
    kps[..., :2] = kps[..., :2] * resized.scale + resized.offset
    return {"image": resized.image, "keypoints": kps, "groups": list(meta.get("groups") or []),
            "ignore": ign, "scale": resized.scale, "offset": resized.offset, "size": (h, w),
            "input_size": resized.input_size}
