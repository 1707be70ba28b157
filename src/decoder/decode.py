"""Network output (or ground-truth maps) -> people: the OpenPose decoder (spec §7), for the decoder's layout.

One straight line, each stage its own module:
``resize`` (bicubic to the network input, averaged over scales; here, computed only where the later stages
read it with ``resize: lazy``, see ``maps.py``) -> ``peaks.find_peaks`` ->
``connections.score_connections`` -> ``assemble.greedy`` -> ``assemble.merge_face_fragments`` /
``keep_people`` -> ``Person`` (here).

Scores. ``Person.score`` is OpenPose's: (sum of keypoint confidences + sum of PAF scores) / (K + P), e.g.
135 + 152 for BODY_135. ``Person.part_scores[part]`` is the same formula restricted to one part of the layout
(``Layout.parts``; BODY_135's are the COCO-WholeBody parts): the part's point
confidences plus the PAF scores of the pairs with both ends in the part, divided by its number of points plus
pairs (BODY_135: body 17 + 26, foot 6 + 2, face 68 + 70, each hand 21 + 20); ``wholebody`` is ``score``
for the BODY_135 family (a layout with COCO-WholeBody parts). A part is 1.0
when every point and link was found at full strength and falls with each one missing, and does not depend on
what the other parts found (so a person whose hands were not seen is not ranked lower for body AP).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from src.core.geometry import STRIDE
from src.core.skeleton import Layout
from src.decoder.assemble import Counting, greedy, keep_people, merge_face_fragments, pair_scores
from src.decoder.connections import score_connections
from src.decoder.maps import FullMaps, LazyMaps, bicubic_matrix
from src.decoder.peaks import find_peaks


@dataclass
class Person:
    """One decoded person: ``keypoints [K, 3]`` (x, y, confidence; zeros when missing) in network-input
    pixels, ``score`` (OpenPose's person score) and ``part_scores`` (one per part of the layout; see the
    module docstring)."""

    keypoints: np.ndarray
    score: float
    part_scores: dict[str, float] = field(default_factory=dict)


class Decoder:
    """The spec §7 decoder with its thresholds (``conf/decoder/default.yaml``; defaults are OpenPose's).

    peak_threshold, max_peaks, refine_radius: §7.3 (0.05, 127 per part, 7x7 centroid).
    inter_threshold, inter_min_above: §7.4 (0.05 per sample, more than 95% of samples).
    min_parts, min_mean_score: §7.5 step 3 (3, 0.4); fallback_*: the maximize_positives pair (2, 0.05) used
    when nobody passes. face_margins, face_overlap, face_overlap_few: the face-fragment merge.
    stride: of the maps (8).
    layout: the keypoint layout of the maps (``Layout.of``: a Layout, its data, a name or a file): K heatmaps
    then 2P PAF channels; the assembly counts its groups as §7.5 does (face and hands as one part each).
    resize: ``lazy`` (default) computes the upsampled maps only where the stages read them (``maps.LazyMaps``:
    windows around the peak seeds, PAF samples); ``full`` upsamples all 439 maps first (``resize``; 540 MB at
    480x640), the reference the lazy reads are tested against. The same people either way.
    """

    def __init__(self, peak_threshold: float = 0.05, max_peaks: int = 127, refine_radius: int = 3,
                 inter_threshold: float = 0.05, inter_min_above: float = 0.95,
                 min_parts: int = 3, min_mean_score: float = 0.4, fallback_min_parts: int = 2,
                 fallback_min_mean_score: float = 0.05, face_margins: tuple[float, float] = (0.2, 0.1),
                 face_overlap: float = 0.3, face_overlap_few: float = 0.01, stride: int = STRIDE,
                 resize: str = "lazy", layout="body135"):
        self.peak_threshold = float(peak_threshold)
        self.max_peaks = int(max_peaks)
        self.refine_radius = int(refine_radius)
        self.inter_threshold = float(inter_threshold)
        self.inter_min_above = float(inter_min_above)
        self.min_parts = int(min_parts)
        self.min_mean_score = float(min_mean_score)
        self.fallback_min_parts = int(fallback_min_parts)
        self.fallback_min_mean_score = float(fallback_min_mean_score)
        self.face_margins = (float(face_margins[0]), float(face_margins[1]))
        self.face_overlap = float(face_overlap)
        self.face_overlap_few = float(face_overlap_few)
        self.stride = int(stride)
        if resize not in ("full", "lazy"):
            raise ValueError(f"decoder.resize must be 'full' or 'lazy', got {resize!r}")
        self.resize_mode = resize  # the method resize() keeps its name
        self.layout = Layout.of(layout)
        self.counting = Counting.of(self.layout)
        self.part_points = {name: np.array(idx) for name, idx in self.layout.parts.items()}
        a, b = self.layout.pairs_a, self.layout.pairs_b
        self.part_pairs = {name: np.nonzero(np.isin(a, idx) & np.isin(b, idx))[0]
                           for name, idx in self.part_points.items()}

    def __call__(self, maps: torch.Tensor | list[torch.Tensor], input_size: tuple[int, int],
                 scales: list[float] | None = None) -> list[Person]:
        """``maps [K + 2P, h, w]`` at ``stride`` (or a list over scales) -> people in ``input_size``
        pixels."""
        coarse = None if isinstance(maps, list | tuple) and len(maps) > 1 else maps
        if coarse is not None:
            coarse = (coarse[0] if isinstance(coarse, list | tuple) else coarse)[:self.layout.num_keypoints]
        resized = (self.lazy if self.resize_mode == "lazy" else self.resize)(maps, input_size, scales)
        return self.decode_resized(resized, coarse)

    def _scales(self, maps: torch.Tensor | list[torch.Tensor], scales: list[float] | None
                ) -> tuple[list[torch.Tensor], list[float]]:
        """The maps as a list, checked, with the upsampling factor of each."""
        maps = list(maps) if isinstance(maps, list | tuple) else [maps]
        for m in maps:
            if m.dim() != 3 or m.shape[0] != self.layout.num_channels:
                raise ValueError(f"decode: maps must be [{self.layout.num_channels}, h, w], "
                                 f"got {tuple(m.shape)}")
        if scales is None:
            scales = [m.shape[-1] / maps[0].shape[-1] for m in maps]
        if len(scales) != len(maps):
            raise ValueError(f"decode: {len(maps)} maps but {len(scales)} scales")
        return maps, [self.stride / float(s) for s in scales]

    def lazy(self, maps: torch.Tensor | list[torch.Tensor], input_size: tuple[int, int],
             scales: list[float] | None = None) -> LazyMaps:
        """What ``resize`` returns, as ``LazyMaps``: each value computed (on the maps' device) when read."""
        maps, factors = self._scales(maps, scales)
        return LazyMaps(maps, factors, (int(input_size[0]), int(input_size[1])))

    def resize(self, maps: torch.Tensor | list[torch.Tensor], input_size: tuple[int, int],
               scales: list[float] | None = None) -> torch.Tensor:
        """Bicubic upsampling to the network input ``(H, W)`` on the maps' device, averaged over scales.

        Map cell g is centred at input pixel ``stride * g + cell_centre(stride)`` (``src.core.geometry``), so
        each map is upsampled by exactly ``stride / s`` (cropped, or zero-padded, to ``(H, W)``). ``s`` is the
        map's scale relative to ``input_size``: given in ``scales``, else its width relative to the first
        map's (1 for a single map). NaN counts as 0.
        """
        maps, factors = self._scales(maps, scales)
        height, width = int(input_size[0]), int(input_size[1])
        out = None
        for m, f in zip(maps, factors, strict=True):
            m = torch.nan_to_num(m.float(), nan=0.0, posinf=0.0, neginf=0.0)
            rows = bicubic_matrix(m.shape[1], f, height).to(m.device)
            cols = bicubic_matrix(m.shape[2], f, width).to(m.device)
            up = torch.matmul(rows, torch.matmul(m, cols.T))
            out = up if out is None else out.add_(up)
        return out if len(maps) == 1 else out.div_(len(maps))

    def decode_resized(self, maps: torch.Tensor | LazyMaps, coarse: torch.Tensor | None = None
                       ) -> list[Person]:
        """``maps [K + 2P, H, W]`` at the network input (``resize``, or ``lazy``: computed where read) ->
        people.
        ``coarse``: the K heatmaps at ``stride`` where the peak search starts (sampled from ``maps`` if
        None)."""
        maps = FullMaps(maps.float()) if isinstance(maps, torch.Tensor) else maps
        heat, pafs = maps[:self.layout.num_keypoints], maps[self.layout.num_keypoints:]
        peaks = find_peaks(heat, self.peak_threshold, self.max_peaks, self.refine_radius, self.stride,
                           coarse)
        conns = score_connections(pafs, peaks, self.layout, self.peak_threshold, self.inter_threshold,
                                  self.inter_min_above)
        slots, used = greedy(peaks, conns, self.layout.num_keypoints)
        slots = merge_face_fragments(slots, peaks, self.counting.face, self.face_margins, self.face_overlap,
                                     self.face_overlap_few)
        pairs = pair_scores(slots, conns, used, len(peaks), self.layout.num_pairs)
        found = slots >= 0
        conf = np.where(found, peaks.score[np.maximum(slots, 0)], 0.0)
        total = conf.sum(1) + pairs.sum(1)
        keep = keep_people(found, total, self.counting, self.min_parts, self.min_mean_score,
                           self.fallback_min_parts, self.fallback_min_mean_score)
        return self._people(slots[keep], conf[keep], pairs[keep], total[keep], peaks)

    def _people(self, slots: np.ndarray, conf: np.ndarray, pairs: np.ndarray, total: np.ndarray,
                peaks) -> list[Person]:
        """One ``Person`` per row; the scores of all rows are computed together (one person at a time cost
        about 50 µs each)."""
        found = slots >= 0
        at = np.maximum(slots, 0)
        kp = np.stack([np.where(found, peaks.x[at], 0), np.where(found, peaks.y[at], 0), conf], 2)
        score = total / (self.layout.num_keypoints + self.layout.num_pairs)
        # C-ordered copies: numpy sums each row of those as it sums a 1-D array, so a person's scores do not
        # depend on who else was found (a fancy-indexed column block would be summed in another order).
        parts = {name: (np.ascontiguousarray(conf[:, idx]).sum(1)
                        + np.ascontiguousarray(pairs[:, self.part_pairs[name]]).sum(1))
                 / (len(idx) + len(self.part_pairs[name])) for name, idx in self.part_points.items()}
        if self.layout.wholebody_parts:
            parts["wholebody"] = score
        return [Person(kp[p], float(score[p]), {name: float(v[p]) for name, v in parts.items()})
                for p in range(len(slots))]


def decoder_for(cfg=None, layout=None) -> Decoder:
    """The decoder of a config (``conf/decoder/*.yaml`` node or dict, with or without ``_target_``; None: the
    spec defaults) for ``layout`` (a model's: it wins over any layout the config names), or ``cfg`` itself
    when it is a ``Decoder`` already."""
    if isinstance(cfg, Decoder):
        return cfg
    cfg = {k: v for k, v in dict(cfg or {}).items() if k != "_target_"}
    return Decoder(**cfg) if layout is None else Decoder(**{**cfg, "layout": layout})


def decode(maps: torch.Tensor | list[torch.Tensor], input_size: tuple[int, int], cfg=None,
           scales: list[float] | None = None) -> list[Person]:
    """The agreed entry point. ``cfg``: as :func:`decoder_for` takes it."""
    return decoder_for(cfg)(maps, input_size, scales)


def to_image_pixels(people: list[Person], scale: float | tuple[float, float],
                    offset: tuple[float, float] = (0.0, 0.0)) -> list[Person]:
    """Map people from network-input pixels back to the original image, where ``input = image * scale +
    offset`` (``scale`` a number or (sx, sy)). Missing points stay zero."""
    sx, sy = (scale, scale) if np.isscalar(scale) else scale
    out = []
    for p in people:
        kp = p.keypoints.copy()
        found = kp[:, 2] > 0
        kp[found, 0] = (kp[found, 0] - offset[0]) / sx
        kp[found, 1] = (kp[found, 1] - offset[1]) / sy
        out.append(Person(kp, p.score, dict(p.part_scores)))
    return out
