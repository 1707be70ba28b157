"""Keypoints for images and video: ``python -m src.predict ckpt_path=MODEL input=... out=DIR``.

``ckpt_path`` is a Lightning checkpoint (``.ckpt``/``.pth``, the network rebuilt from the config saved in
it), an ONNX file (run by ONNX Runtime) or a TorchScript file (``.pt``/``.ts``), both from ``src.export``;
each carries its keypoint layout (BODY_135, or the layout it was trained with), so nothing else is needed.
Each image goes through :class:`src.inference.Inference`: resized to ``height`` (480 = OpenPose's ``-1x480``;
the width keeps the aspect ratio), run at every factor of ``scales`` (``[2, 1.5, 1, 0.5]`` = the paper's
960/720/480/240, averaged; ``flip=true`` adds the mirrored image), decoded, and its people mapped back to
the original pixels. For images (a file or a folder), written into ``out``:

- ``<image stem>_keypoints.json`` per image: OpenPose JSON 1.3 with the layout's points in
  ``pose_keypoints_2d`` and its name in ``layout`` (:mod:`src.decoder.writers`);
- ``<image stem>_overlay.jpg`` (``overlay_format=png``: ``.png``) per image: the skeletons drawn over the
  image (:mod:`src.decoder.draw`);
- ``results_wholebody.json`` (``results_keypoints.json`` for a layout outside the BODY_135 family): COCO
  result records of the run, and ``images.json`` naming each
  ``image_id`` (the file stems when all are numbers, as in COCO, else each image's position in the run).

For a video file or a camera index (``input=0``, through OpenCV's ``VideoCapture``): one
``<stem>_<frame:012d>_keypoints.json`` per frame, as OpenPose names them, and ``<stem>_overlay.mp4``.

Unreadable images are reported and skipped; the others are processed. Settings: ``conf/predict.yaml`` and
the decoder's ``conf/decoder/default.yaml`` (``decoder.peak_threshold=0.1``); ``--help`` prints the usage.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import cv2
import hydra
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from src.core import checkpoint, image_io
from src.core.cli import ensure_writable, report_errors, run
from src.core.skeleton import BODY_135, Layout
from src.decoder import draw
from src.decoder.decode import decoder_for
from src.decoder.writers import records as result_records
from src.decoder.writers import write_openpose_json
from src.inference import Inference, load_model

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv"}
USAGE = "python -m src.predict ckpt_path=MODEL input=IMAGE_OR_DIR|VIDEO|CAMERA_INDEX out=DIR"


def list_images(input_path: str | Path) -> list[Path]:
    """The image files of a folder (sorted, by suffix), or the one file given."""
    path = Path(input_path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise FileNotFoundError(f"input: no images ({sorted(IMAGE_SUFFIXES)}) in {path}")
        return files
    if path.is_file():
        return [path]
    raise FileNotFoundError(f"input: no file or folder at {path}")


def image_ids(files: list[Path]) -> list[int]:
    """COCO ids from the file stems when every stem is a number (``000000000785.jpg`` -> 785), else the
    position in the run from 1 (never a mix, so ids cannot collide)."""
    if all(p.stem.isdigit() for p in files) and len({int(p.stem) for p in files}) == len(files):
        return [int(p.stem) for p in files]
    return list(range(1, len(files) + 1))


def predict(cfg: DictConfig) -> dict:
    """Run ``cfg.ckpt_path`` over ``cfg.input`` (images, a video file or a camera index); write everything
    into ``cfg.out``; return a summary."""
    missing = [k for k in ("ckpt_path", "input") if OmegaConf.is_missing(cfg, k)]
    if missing:
        raise ValueError(f"give {missing[0]}=... ({USAGE})")
    source = str(cfg.input)
    is_video = source.isdigit() or Path(source).suffix.lower() in VIDEO_SUFFIXES
    files = None if is_video else list_images(source)
    if cfg.overlay_format not in OVERLAY_FORMATS:
        raise ValueError(f"overlay_format must be one of {list(OVERLAY_FORMATS)}, got {cfg.overlay_format!r}")
    out = ensure_writable(cfg.out, "out", folder=True)  # before the model is loaded and any image is run
    with checkpoint.trusted(bool(cfg.get("trust_checkpoint", False))):
        model = load_model(cfg.ckpt_path, cfg.device)
    inference = Inference(model, decoder_for(cfg.decoder, model.layout), list(cfg.scales), cfg.device,
                          cfg.flip, cfg.precision)
    if is_video:
        return predict_video(cfg, inference, source, out)
    return predict_images(cfg, inference, files, out)


OVERLAY_FORMATS = {"jpg": [cv2.IMWRITE_JPEG_QUALITY, 95], "png": [cv2.IMWRITE_PNG_COMPRESSION, 1]}
"""Overlay file formats and their cv2 settings: JPEG writes a 640x480 overlay in ~2 ms, PNG (level 1, the
default level is slower still) in ~25 ms, longer than the decoder takes to find the people."""


def write_image_outputs(out: Path, stem: str, image: np.ndarray, people: list, overlay: bool,
                        overlay_format: str = "jpg", layout: Layout = BODY_135) -> None:
    """``<stem>_keypoints.json`` and, with ``overlay``, ``<stem>_overlay.<overlay_format>``."""
    write_openpose_json(people, out / f"{stem}_keypoints.json", layout)
    if overlay:
        picture = draw.draw_people(image, [p.keypoints for p in people], layout=layout)
        cv2.imwrite(str(out / f"{stem}_overlay.{overlay_format}"), picture, OVERLAY_FORMATS[overlay_format])


def _people(inference: Inference, image, height: int) -> list:
    with torch.inference_mode():
        return inference.image(image, height)


def predict_images(cfg: DictConfig, inference: Inference, files: list[Path], out: Path) -> dict:
    """One OpenPose JSON (and overlay) per image, plus the run's COCO result records and image list."""
    layout = inference.decoder.layout
    records, images, skipped = [], [], []
    ids = image_ids(files)
    for iid, path in zip(ids, tqdm(files, desc="predict", unit="img", disable=not cfg.progress), strict=True):
        try:
            image = image_io.read(path)
        except image_io.ImageError as err:  # truncated, corrupt or not an image: listed, not guessed at
            skipped.append({"file": str(path), "reason": err.reason})
            log.warning("skipped %s", err)
            continue
        people = _people(inference, image, int(cfg.height))
        write_image_outputs(out, path.stem, image, people, cfg.overlay, cfg.overlay_format, layout)
        records += result_records(people, iid, layout)
        images.append({"id": iid, "file_name": path.name, "height": image.shape[0], "width": image.shape[1],
                       "people": len(people)})
    results = "results_wholebody.json" if layout.wholebody_parts else "results_keypoints.json"
    (out / results).write_text(json.dumps(records))
    (out / "images.json").write_text(json.dumps({"images": images, "skipped": skipped}, indent=1))
    summary = {"processed": len(images), "skipped": len(skipped), "people": len(records), "out": str(out)}
    print(f"predict: {len(images)} images, {len(records)} people, {len(skipped)} skipped -> {out}")
    for item in skipped:
        print(f"  skipped {item['file']}: {item['reason']}", file=sys.stderr)
    return summary


def open_video(source: str) -> tuple[cv2.VideoCapture, str, np.ndarray]:
    """(an opened capture, the stem its files are named by, its first frame) for a camera index or a video
    file; a capture that yields no frame is an error naming it."""
    if source.isdigit():
        capture, stem, what = cv2.VideoCapture(int(source)), f"camera{source}", f"camera {source}"
    else:
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"input: no file at {path}")
        capture, stem, what = cv2.VideoCapture(str(path)), path.stem, str(path)
    ok, first = capture.read() if capture.isOpened() else (False, None)
    if not ok:
        capture.release()
        if source.isdigit():
            raise FileNotFoundError(f"input={source}: camera {source} cannot be opened")
        raise ValueError(f"input={what}: not a video OpenCV can read (no frame decodes)")
    return capture, stem, first


def predict_video(cfg: DictConfig, inference: Inference, source: str, out: Path) -> dict:
    """Frame by frame: ``<stem>_<frame:012d>_keypoints.json`` (OpenPose's naming) and ``<stem>_overlay.mp4``.
    Ctrl-C stops after the frame being decoded; every finished frame stays written."""
    capture, stem, frame = open_video(source)
    fps = capture.get(cv2.CAP_PROP_FPS) or 30.0
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    writer = cv2.VideoWriter(str(out / f"{stem}_overlay.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), fps,
                             frame.shape[1::-1]) if cfg.overlay else None
    frames, people_count, stopped, layout = 0, 0, False, inference.decoder.layout
    bar = tqdm(total=total, desc="predict", unit="frame", disable=not cfg.progress)
    try:
        while frame is not None:
            people = _people(inference, frame, int(cfg.height))
            write_openpose_json(people, out / f"{stem}_{frames:012d}_keypoints.json", layout)
            if writer is not None:
                writer.write(draw.draw_people(frame, [p.keypoints for p in people], layout=layout))
            frames, people_count = frames + 1, people_count + len(people)
            bar.update(1)
            ok, frame = capture.read()
            frame = frame if ok else None
    except KeyboardInterrupt:
        stopped = True
    finally:
        bar.close()
        capture.release()
        if writer is not None:
            writer.release()
    if frames == 0:
        raise ValueError(f"input={source}: no frame could be read")
    summary = {"processed": frames, "skipped": 0, "people": people_count, "out": str(out),
               "interrupted": stopped}
    print(f"predict: {frames} frames, {people_count} people{' (interrupted)' if stopped else ''} -> {out}")
    return summary


@hydra.main(version_base="1.3", config_path="../conf", config_name="predict")
@report_errors
def _main(cfg: DictConfig) -> None:
    summary = predict(cfg)  # an error: one line from report_errors
    if summary["processed"] == 0:
        sys.exit("error: no image could be read")


def main() -> None:
    """``model=FILE``, the older name of ``ckpt_path``, is renamed with a note before Hydra reads the line
    (Hydra would take it as a choice of the ``conf/model`` group)."""
    for i, arg in enumerate(sys.argv[1:], 1):
        if arg.startswith("model="):
            print("note: model=FILE is deprecated and will be removed in the next release; "
                  "use ckpt_path=FILE", file=sys.stderr)
            sys.argv[i] = "ckpt_path=" + arg[len("model="):]
    run(_main)


if __name__ == "__main__":
    main()
