"""A keypoint layout from a COCO keypoint annotation file, and a layout's summary.

``python -m src.layout from_coco=ANN.json out=FILE.yaml [sigmas=[...]] [category=NAME] [skeleton=[[a,b],...]]
[name=NAME] [target_sigma=7.0] [joint_weights=[...]]``

``python -m src.layout show=FILE_OR_NAME``

The layout is built from one category's ``keypoints`` (channel order) and ``skeleton`` (1-based index pairs,
as COCO, CVAT, Label Studio and MMPose write them; the PAF pairs, in that order). Left/right flip pairs are
derived from the names (:func:`derive_flip`). ``sigmas`` are the evaluator's OKS sigmas (default 0.07 for
every point, with a warning); ``target_sigma`` is the training Gaussian's sigma in input pixels for every
point.

A skeleton that points outside the keypoint list, joins a point to itself or leaves a keypoint in no pair is
refused (one line, exit code 1, nothing written); ``skeleton=[[a,b],...]`` by name (or 1-based index) replaces
the file's skeleton.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from src.core.cli import ensure_writable, report_errors, run
from src.core.skeleton import Layout

DEFAULT_OKS_SIGMA = 0.07
"""OKS sigma of every point when none are given: roughly the mean of COCO's 17 body sigmas (0.025-0.107)."""

DEFAULT_TARGET_SIGMA = 7.0
"""The training Gaussian's sigma in input pixels: BODY_135's body value (spec §3.2)."""


# -- left/right from names -----------------------------------------------------------------------------------
_WORDS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
"""A name's words: split at separators (anything not a letter or digit), at camel-case boundaries
(``LeftEye`` -> Left, Eye; ``LEye`` -> L, Eye; ``LEFT_EYE`` -> LEFT, EYE) and between letters and digits."""

_SIDES = {"left": "right", "right": "left", "l": "r", "r": "l"}


def _swap_case(word: str, like: str) -> str:
    """``word`` written in the case pattern of ``like`` (LEFT -> RIGHT, Left -> Right, left -> right)."""
    if like.isupper():
        return word.upper()
    if like[0].isupper():
        return word.capitalize()
    return word


def _mirrors(name: str) -> list[str]:
    """Every name obtained from ``name`` by swapping one of its side words (left/right, l/r, any case)."""
    out = []
    for m in _WORDS.finditer(name):
        other = _SIDES.get(m.group().lower())
        if other is not None:
            out.append(name[:m.start()] + _swap_case(other, m.group()) + name[m.end():])
    return out


def derive_flip(names) -> list[tuple[str, str]]:
    """Left/right pairs of ``names``, each pair in channel order, ordered by its first point.

    A side is a whole word of the name: ``left``/``right`` or ``l``/``r`` in any case, as a prefix, suffix or
    inner word (``left_eye``, ``l_eye``, ``L_Eye``, ``LEye``, ``LeftHand``, ``LEFT_KNEE``, ``eye_left``,
    ``wrist_r``, ``hand_left_thumb``). A name pairs with the name made by swapping that word, only if that
    name exists (and maps back). Letters inside a word are never a side: ``lip``/``rip``, ``leg``/``reg`` and
    ``lefthand`` (one word) pair with nothing."""
    names = [str(n) for n in names]
    at = {n: i for i, n in enumerate(names)}
    mirror = {}
    for n in names:
        found = [m for m in _mirrors(n) if m in at and m != n]
        if found:
            mirror[n] = found[0]
    pairs = []
    for a, b in mirror.items():
        if mirror.get(b) == a and at[a] < at[b]:
            pairs.append((a, b))
    return sorted(pairs, key=lambda p: at[p[0]])


def unmirrored(names, flip) -> list[str]:
    """The names in no flip pair (they map onto themselves under a horizontal mirror)."""
    paired = {n for p in flip for n in p}
    return [str(n) for n in names if str(n) not in paired]


# -- a layout from COCO data ---------------------------------------------------------------------------------
def _category(data: dict, category: str | None, src: str) -> tuple[dict, bool]:
    """(the category giving the layout, whether several categories share its keypoints and skeleton)."""
    if not isinstance(data, dict):
        raise ValueError(f"{src}: expected a COCO annotation object with 'categories'")
    cats = data.get("categories")
    if not cats or not isinstance(cats, list):
        raise ValueError(f"{src}: no categories (a COCO keypoint file lists them with their 'keypoints')")
    labels = [str(c.get("name", c.get("id", i))) for i, c in enumerate(cats)]
    if category is not None:
        picked = [c for c, n in zip(cats, labels, strict=True) if n == str(category)]
        if not picked:
            raise ValueError(f"{src}: no category {str(category)!r}; the file has {labels}")
        cats, labels = picked[:1], [str(category)]
    for c, n in zip(cats, labels, strict=True):
        if not c.get("keypoints"):
            raise ValueError(f"{src}: category {n!r} has no 'keypoints' list "
                             f"(not a keypoint annotation file?)")
    kinds = {json.dumps([c["keypoints"], c.get("skeleton") or []]) for c in cats}
    if len(kinds) > 1:
        raise ValueError(f"{src}: {len(cats)} categories with different keypoint lists or skeletons "
                         f"{labels}; pick one with category=NAME")
    return cats[0], len(cats) > 1


def _pairs(skeleton, names: list[str], src: str, fix: str) -> list[tuple[int, int]]:
    """The skeleton's pairs as 0-based indices: entries are 1-based indices or keypoint names."""
    at = {n: i for i, n in enumerate(names)}
    k = len(names)
    out = []
    for j, pair in enumerate(skeleton, 1):
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise ValueError(f"{src} pair {j} {pair!r}: a pair is two keypoints [a, b]; {fix}")
        ends = []
        for end in pair:
            if isinstance(end, bool) or not isinstance(end, (int, str)):
                raise ValueError(f"{src} pair {j} {list(pair)}: {end!r} is neither a keypoint name nor a "
                                 f"1-based index; {fix}")
            if isinstance(end, str) and end in at:
                ends.append(at[end])
            elif isinstance(end, int) or end.strip().isdigit():
                i = int(end)
                if not 1 <= i <= k:
                    raise ValueError(f"{src} pair {j} {list(pair)} points at keypoint {i}, outside the {k} "
                                     f"keypoints (1-based 1..{k}); {fix}")
                ends.append(i - 1)
            else:
                raise ValueError(f"{src} pair {j} {list(pair)} names {end!r}, which is not one of the {k} "
                                 f"keypoints {names}; {fix}")
        a, b = ends
        if a == b:
            raise ValueError(f"{src} pair {j} {list(pair)} joins {names[a]!r} to itself; drop it ({fix})")
        out.append((a, b))
    return out


def _components(k: int, pairs: list[tuple[int, int]]) -> int:
    """How many connected pieces the pairs make of the keypoints that are in some pair."""
    parent = list(range(k))

    def root(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in pairs:
        parent[root(a)] = root(b)
    return len({root(i) for p in pairs for i in p})


def _values(values, k: int, what: str, positive: bool = True) -> tuple[float, ...]:
    try:
        out = tuple(float(x) for x in values)
    except (TypeError, ValueError):
        raise ValueError(f"{what}={values!r}: expected a list of {k} numbers") from None
    if len(out) != k:
        raise ValueError(f"{what}: {len(out)} values given for {k} keypoints; give one per keypoint")
    if positive and not all(x > 0 for x in out):
        raise ValueError(f"{what}: every value must be > 0, got {list(out)}")
    return out


def layout_from_coco(data: dict, sigmas=None, category: str | None = None, skeleton=None,
                     name: str | None = None, target_sigma: float = DEFAULT_TARGET_SIGMA, joint_weights=None,
                     source: str | None = None) -> tuple[Layout, list[str]]:
    """A layout from COCO keypoint data (a loaded annotation file) -> (layout, notes for the user).

    sigmas:        the OKS sigma per keypoint (None: 0.07 each, and a warning among the notes).
    category:      the category's name, when the file has several with different keypoint lists.
    skeleton:      pairs by keypoint name or 1-based index replacing the category's ``skeleton``.
    name:          the layout's name (default: the category's; with several categories sharing one keypoint
                   list, the stem of ``source``).
    target_sigma:  the training Gaussian's sigma in input pixels, for every point.
    joint_weights: optional loss weight per keypoint.
    source:        the file the data came from (error messages and the default name).

    Errors are ``ValueError`` with one line naming the file, the pair or keypoint, and the fix."""
    src = str(source) if source else "annotations"
    cat, shared = _category(data, category, src)
    names = [str(n) for n in cat["keypoints"]]
    k = len(names)
    if len(set(names)) != k:
        dup = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"{src}: keypoint names must be unique; repeated: {dup}")
    example = "skeleton=[[" + ",".join(names[:2]) + "],...]" if k > 1 else "skeleton=[[a,b],...]"
    if skeleton is not None:
        where, fix = "skeleton=", f"give the pairs by keypoint name, e.g. {example}"
        raw = skeleton
    else:
        where, fix = f"{src}: skeleton", f"replace the file's skeleton by name: {example}"
        raw = cat.get("skeleton") or []
    pairs = _pairs(raw, names, where, fix)
    if not pairs:
        raise ValueError(f"{src}: the category has no skeleton, so no PAF pair; give one with {example}")
    reached = {i for p in pairs for i in p}
    alone = [names[i] for i in range(k) if i not in reached]
    if alone:
        raise ValueError(f"{where}: keypoint(s) {alone} are in no pair, so the decoder could never attach "
                         f"them to a person; add pairs reaching them, e.g. {example}")

    notes = []
    if sigmas is None:
        oks = (DEFAULT_OKS_SIGMA,) * k
        notes.append(f"WARNING: no sigmas given: OKS sigma {DEFAULT_OKS_SIGMA} for all {k} keypoints "
                     f"(roughly COCO's mean body sigma). AP depends on them: pass the dataset's own, "
                     f"one per keypoint in channel order, with sigmas=[s1,...,s{k}]")
    else:
        oks = _values(sigmas, k, "sigmas")
    weights = None if joint_weights is None else _values(joint_weights, k, "joint_weights", positive=False)
    if float(target_sigma) <= 0:
        raise ValueError(f"target_sigma={target_sigma}: must be > 0 (input pixels)")
    if name is None:
        name = Path(src).stem if shared and source else cat.get("name") or Path(src).stem
    flip = derive_flip(names)
    numbered = [f"{a}<->{b}" for a, b in flip if re.search(r"[0-9]", a + b)]
    if numbered:
        notes.append(f"check: {len(numbered)} flip pair(s) join numbered points by their number "
                     f"({', '.join(numbered[:3])}{', ...' if len(numbered) > 3 else ''}); a contour "
                     f"numbered the same way round on both sides mirrors to another number: edit 'flip' in "
                     f"the file then")
    pieces = _components(k, pairs)
    if pieces > 1:
        notes.append(f"WARNING: the pairs make {pieces} separate pieces: the decoder assembles each piece "
                     f"as a person of its own; join them with a pair")
    seen, repeats = set(), []
    for a, b in pairs:
        key = frozenset((a, b))
        if key in seen:
            repeats.append([names[a], names[b]])
        seen.add(key)
    if repeats:
        notes.append(f"note: pair(s) {repeats} repeat an earlier pair (each is a PAF of its own)")
    if shared:
        notes.append(f"{len(data['categories'])} categories share these keypoints and skeleton: one layout")
    layout = Layout(name=str(name), names=tuple(names), groups={}, group_extras={}, pairs=tuple(pairs),
                    flip=tuple(flip), group_flip={}, sigmas=(float(target_sigma),) * k, oks_sigmas=oks,
                    joint_weights=weights)
    return layout, notes


def load_coco(path) -> dict:
    """A COCO annotation file's data; one-line errors for a missing file or one that is not JSON."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"from_coco={path}: no such file")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"from_coco={path}: not JSON ({err})") from None


def summary(layout: Layout) -> list[str]:
    """Lines describing a layout: name, sizes, pairs and flip pairs by name."""
    names = layout.names
    flip = ", ".join(f"{a}<->{b}" for a, b in layout.flip) or "none"
    lines = [f"layout {layout.name}: {layout.num_keypoints} keypoints, {layout.num_pairs} pairs, "
             f"{layout.num_channels} output channels (digest {layout.digest})",
             f"keypoints: {', '.join(names)}",
             f"pairs: {', '.join(f'{names[a]}-{names[b]}' for a, b in layout.pairs)}",
             f"flip pairs ({len(layout.flip)}): {flip}"]
    alone = unmirrored(names, layout.flip)
    if alone:
        lines.append(f"no mirror (map onto themselves): {', '.join(alone)}")
    return lines


def _train_hint(out: Path) -> str:
    """The next command: ``layout=NAME`` finds a file in a ``layout/`` folder of Hydra's search path
    (the project's ``conf/layout/``, or another ``.../layout/`` added with ``hydra.searchpath``)."""
    folder = out.resolve().parent
    if folder.parts[-2:] == ("conf", "layout") and folder.parent.parent == Path.cwd().resolve():
        where = ""
    elif folder.name == "layout":
        where = f" 'hydra.searchpath=[file://{folder.parent}]'"
    else:
        return (f"next: move it into conf/layout/ (or any .../layout/ folder on hydra.searchpath), then "
                f"python -m src.train layout={out.stem} ...")
    return f"next: python -m src.train layout={out.stem}{where} data=custom ...   (docs/custom_keypoints.md)"


def _opt(value):
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def build(cfg) -> Layout:
    """The CLI's work for one config: ``show`` or ``from_coco`` -> the layout (written when from_coco)."""
    if cfg.show is not None and cfg.from_coco is not None:
        raise ValueError("give either show=FILE_OR_NAME or from_coco=ANN.json out=FILE.yaml, not both")
    if cfg.show is not None:
        layout = Layout.of(str(cfg.show))
        print("\n".join(summary(layout)))
        return layout
    if cfg.from_coco is None:
        raise ValueError("give from_coco=ANN.json out=FILE.yaml (or show=FILE_OR_NAME)")
    if not cfg.out:
        raise ValueError("out: give out=FILE.yaml, the layout file to write")
    out = ensure_writable(cfg.out, "out")
    data = load_coco(cfg.from_coco)
    layout, notes = layout_from_coco(data, sigmas=_opt(cfg.sigmas), category=cfg.category,
                                     skeleton=_opt(cfg.skeleton), name=cfg.name,
                                     target_sigma=cfg.target_sigma, joint_weights=_opt(cfg.joint_weights),
                                     source=str(cfg.from_coco))
    layout.save(out)
    print("\n".join(notes + summary(layout)))
    print(f"wrote {out}")
    print(_train_hint(out))
    return layout


@hydra.main(version_base="1.3", config_path="../conf", config_name="layout_cli")
@report_errors
def main(cfg: DictConfig) -> None:
    build(cfg)


if __name__ == "__main__":
    run(main)
