"""A per-person cascade like OpenPose run with ``--face --hand``, the baseline of the runtime benchmark.

OpenPose's multi-network whole-body pipeline runs a body network on the image, assembles people, then for
every person cuts a face box and two hand boxes out of the image (placed from the body keypoints), resizes
each to a fixed square and runs a separate face or hand network on it, one crop after another. Its cost is
therefore ``body + people x (face + 2 hands)``. Here the crop networks are built from the same parts as the
single network (VGG-19 front, dense-block stages; :mod:`src.model.net`) so that their cost per pixel is
comparable; weights are random, since only the time is measured.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from src.core.geometry import normalise
from src.model.net import VGG19, Stage, StridedStem

NOSE, LEYE, REYE, LEAR, REAR, LSHOULDER, RSHOULDER, LELBOW, RELBOW, LWRIST, RWRIST = range(11)
HEAD = [NOSE, LEYE, REYE, LEAR, REAR]
HANDS = {"left": (LSHOULDER, LELBOW, LWRIST), "right": (RSHOULDER, RELBOW, RWRIST)}


class CropNet(nn.Module):
    """A crop network (OpenPose's face or hand net): backbone, adapter, stages of heatmaps only.

    Stage 0 reads the adapter features F, stage t > 0 reads concat(F, heatmaps of t-1); the output is the last
    stage's ``num_keypoints + 1`` heatmaps (the extra one is the background channel) at stride 8.
    """

    def __init__(self, num_keypoints: int, stages: list[list[int]], adapter: tuple[int, ...] = (256, 128),
                 backbone: str = "vgg19"):
        super().__init__()
        self.backbone = VGG19() if backbone == "vgg19" else StridedStem()
        layers: list[nn.Module] = []
        cin = self.backbone.out_channels
        for cout in adapter:
            layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.PReLU(cout)]
            cin = cout
        self.adapter = nn.Sequential(*layers)
        out = num_keypoints + 1
        self.stages = nn.ModuleList(Stage(cin if t == 0 else cin + out, out, *spec)
                                    for t, spec in enumerate(stages))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.adapter(self.backbone(x))
        maps = None
        for stage in self.stages:
            maps = stage(f if maps is None else torch.cat([f, maps], 1))
        return maps


def _valid(kp: np.ndarray, idx: list[int]) -> np.ndarray:
    pts = kp[idx]
    return pts[pts[:, 2] > 0, :2]


def face_box(kp: np.ndarray) -> tuple[float, float, float] | None:
    """(centre x, centre y, side) of a square around the head, from nose/eyes/ears and the shoulders."""
    head = _valid(kp, HEAD)
    if len(head) == 0:
        return None
    cx, cy = head.mean(0)
    spread = float(np.abs(head - (cx, cy)).max()) if len(head) > 1 else 0.0
    shoulders = _valid(kp, [LSHOULDER, RSHOULDER])
    width = float(np.linalg.norm(shoulders[0] - shoulders[1])) if len(shoulders) == 2 else 0.0
    side = max(3.0 * spread, 0.6 * width, 16.0)
    return float(cx), float(cy), side


def hand_box(kp: np.ndarray, side_name: str) -> tuple[float, float, float] | None:
    """(centre x, centre y, side) of a square around one hand, extrapolated from elbow to wrist."""
    shoulder, elbow, wrist = (kp[i] for i in HANDS[side_name])
    if wrist[2] <= 0 or elbow[2] <= 0:
        return None
    forearm = wrist[:2] - elbow[:2]
    upper = float(np.linalg.norm(elbow[:2] - shoulder[:2])) if shoulder[2] > 0 else 0.0
    centre = wrist[:2] + 0.3 * forearm
    side = max(1.5 * max(float(np.linalg.norm(forearm)), 0.9 * upper), 16.0)
    return float(centre[0]), float(centre[1]), side


def crop(image: np.ndarray, box: tuple[float, float, float], size: int) -> tuple[np.ndarray, np.ndarray]:
    """The square ``box`` of ``image`` resized to ``size`` x ``size``, and the affine crop -> image."""
    cx, cy, side = box
    s = size / side
    to_crop = np.array([[s, 0, size / 2 - s * cx], [0, s, size / 2 - s * cy]], np.float32)
    patch = cv2.warpAffine(image, to_crop, (size, size), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0))
    return patch, cv2.invertAffineTransform(to_crop)


def crop_keypoints(net: nn.Module, patch: np.ndarray, back: np.ndarray, device: torch.device) -> np.ndarray:
    """Run a crop network; the per-channel maximum of its upsampled heatmaps -> ``[K, 3]`` in image pixels."""
    x = normalise(torch.from_numpy(patch).to(device).permute(2, 0, 1)[None])
    maps = net(x)[0, :-1]
    maps = F.interpolate(maps[None], size=patch.shape[:2], mode="bicubic", align_corners=False)[0]
    score, flat = maps.flatten(1).max(1)
    ys, xs = flat // patch.shape[1], flat % patch.shape[1]
    pts = torch.stack([xs.float(), ys.float(), torch.ones_like(score)], 1).cpu().numpy()
    out = np.empty((len(pts), 3), np.float32)
    out[:, :2] = pts @ back.T
    out[:, 2] = score.cpu().numpy()
    return out


class Cascade:
    """body network + decoder -> people -> per person: face crop + face net, two hand crops + hand net."""

    def __init__(self, body_net: nn.Module, face_net: nn.Module, hand_net: nn.Module, decode_body,
                 crop_size: int, device: torch.device):
        self.body_net, self.face_net, self.hand_net = body_net, face_net, hand_net
        self.decode_body = decode_body
        self.crop_size, self.device = crop_size, device

    @torch.inference_mode()
    def __call__(self, image: np.ndarray, body_maps: torch.Tensor) -> dict[str, int]:
        """One frame. ``body_maps`` stand in for the body network's output (random weights find nobody): the
        decoder runs on them to place the crops. Returns how many people, faces and hands were processed."""
        x = normalise(torch.from_numpy(image).to(self.device).permute(2, 0, 1)[None])
        self.body_net(x)
        people = self.decode_body(body_maps)
        faces = hands = 0
        for kp in people:
            box = face_box(kp)
            if box is not None:
                crop_keypoints(self.face_net, *crop(image, box, self.crop_size), self.device)
                faces += 1
            for side in HANDS:
                box = hand_box(kp, side)
                if box is not None:
                    crop_keypoints(self.hand_net, *crop(image, box, self.crop_size), self.device)
                    hands += 1
        return {"cascade_people": len(people), "faces": faces, "hands": hands}
