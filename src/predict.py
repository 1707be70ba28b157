"""Whole-body keypoints for images: ``python -m src.predict model=MODEL input=IMAGE_OR_DIR out=DIR``.

``model`` is a Lightning checkpoint (``.ckpt``/``.pth``, the network rebuilt from the config saved in it), an
ONNX file (run by ONNX Runtime) or a TorchScript file (``.pt``/``.ts``), both from ``python -m src.export``.
Each image is resized to ``height`` (480 = OpenPose's ``-1x480``; the width keeps the aspect ratio), padded to
a multiple of 8, run at every factor of ``scales`` (``[2, 1.5, 1, 0.5]`` = the paper's 960/720/480/240,
averaged by the decoder), decoded, and its people mapped back to the original pixels. Written into ``out``:

- ``<image stem>_keypoints.json`` per image: OpenPose JSON 1.3 (:mod:`src.outputs`);
- ``<image stem>_overlay.png`` per image: the skeletons drawn over the image (:mod:`src.draw`);
- ``results_wholebody.json``: COCO-WholeBody result records of the run, and ``images.json`` naming each
  ``image_id`` (the file stems when all are numbers, as in COCO, else each image's position in the run).

Unreadable images are reported and skipped; the others are processed. Settings: ``conf/predict.yaml``, the
decoder's from ``conf/decoder/default.yaml`` (override as ``decoder.peak_threshold=0.1``). The command line is
read with OmegaConf rather than Hydra because ``model=`` here names a file, while Hydra would read it as a
choice of the ``conf/model`` group.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import cv2
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from datamodules.augment import resize_for_eval
from src.decoder import draw
from src.decoder.decode import to_image_pixels
from src.decoder.writers import wholebody_records, write_openpose_json
from src.export import build_network, load_exported

log = logging.getLogger(__name__)

CONF = Path(__file__).resolve().parents[1] / "conf"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
CHECKPOINT_SUFFIXES = {".ckpt", ".pth"}
TORCHSCRIPT_SUFFIXES = {".pt", ".ts", ".torchscript"}


def load_model(path: str | Path, device: str = "cpu"):
    """A callable: normalised ``[1, 3, H, W]`` tensor -> ``[1, 439, H/8, W/8]`` maps, for any model file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model: no file at {path}")
    suffix = path.suffix.lower()
    if suffix in CHECKPOINT_SUFFIXES:
        net = build_network(None, path)[0].to(device)
        return lambda x: net.maps(net(x.to(device)))
    if suffix == ".onnx" or suffix in TORCHSCRIPT_SUFFIXES:
        run = load_exported(path)
        return lambda x: torch.from_numpy(run(x.cpu().numpy()))
    raise ValueError(f"model: {path} is neither a checkpoint ({sorted(CHECKPOINT_SUFFIXES)}), ONNX (.onnx) "
                     f"nor TorchScript ({sorted(TORCHSCRIPT_SUFFIXES)})")


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


def multiscale(model, x: torch.Tensor, scales: list[float]) -> list[torch.Tensor]:
    """The maps of ``x`` resized by each factor and padded right/bottom to a multiple of 8 (coordinates
    unshifted, as ``src.validation.multiscale_maps`` does for a PoseNet)."""
    out = []
    for s in scales:
        xs = x if s == 1 else F.interpolate(x, scale_factor=s, mode="bilinear", align_corners=False)
        h, w = xs.shape[-2:]
        out.append(model(F.pad(xs, (0, -w % 8, 0, -h % 8)))[0].float())
    return out


def image_ids(files: list[Path]) -> list[int]:
    """COCO ids from the file stems when every stem is a number (``000000000785.jpg`` -> 785), else the
    position in the run from 1 (never a mix, so ids cannot collide)."""
    if all(p.stem.isdigit() for p in files) and len({int(p.stem) for p in files}) == len(files):
        return [int(p.stem) for p in files]
    return list(range(1, len(files) + 1))


def predict(cfg: DictConfig) -> dict:
    """Run ``cfg.model`` over ``cfg.input``; write everything into ``cfg.out``; return a summary."""
    files = list_images(cfg.input)
    model = load_model(cfg.model, cfg.device)
    decoder = instantiate(cfg.decoder)
    scales = [float(s) for s in cfg.scales]
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    records, images, skipped = [], [], []
    ids = image_ids(files)
    for iid, path in zip(ids, tqdm(files, desc="predict", unit="img", disable=not cfg.progress), strict=True):
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            skipped.append({"file": str(path), "reason": "unreadable image (cv2.imread failed)"})
            log.warning("skipped %s: unreadable image", path)
            continue
        net_in = resize_for_eval(image, {"people": []}, None, int(cfg.height))
        x = torch.from_numpy(net_in["image"]).permute(2, 0, 1)[None].float() / 256 - 0.5
        with torch.inference_mode():
            people = decoder(multiscale(model, x, scales), tuple(x.shape[-2:]), scales)
        people = to_image_pixels(people, tuple(net_in["scale"]), tuple(net_in["offset"]))
        write_openpose_json(people, out / f"{path.stem}_keypoints.json")
        if cfg.overlay:
            cv2.imwrite(str(out / f"{path.stem}_overlay.png"),
                        draw.draw_people(image, [p.keypoints for p in people]))
        records += wholebody_records(people, iid)
        images.append({"id": iid, "file_name": path.name, "height": image.shape[0], "width": image.shape[1],
                       "people": len(people)})
    (out / "results_wholebody.json").write_text(json.dumps(records))
    (out / "images.json").write_text(json.dumps({"images": images, "skipped": skipped}, indent=1))
    summary = {"processed": len(images), "skipped": len(skipped), "people": len(records), "out": str(out)}
    print(f"predict: {len(images)} images, {len(records)} people, {len(skipped)} skipped -> {out}")
    for item in skipped:
        print(f"  skipped {item['file']}: {item['reason']}", file=sys.stderr)
    return summary


def config(argv: list[str]) -> DictConfig:
    """``conf/predict.yaml``, ``conf/decoder/default.yaml`` as ``decoder``, then the ``key=value`` args."""
    cfg = OmegaConf.load(CONF / "predict.yaml")
    cfg.decoder = OmegaConf.load(CONF / "decoder" / "default.yaml")
    cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(argv))
    missing = [k for k in ("model", "input") if OmegaConf.is_missing(cfg, k)]
    if missing:
        raise ValueError(f"give {missing[0]}=... "
                         "(python -m src.predict model=MODEL input=IMAGE_OR_DIR out=DIR)")
    return cfg


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        summary = predict(config(sys.argv[1:] if argv is None else argv))
    except (FileNotFoundError, ValueError) as err:
        sys.exit(f"error: {err}")
    if summary["processed"] == 0:
        sys.exit("error: no image could be read")


if __name__ == "__main__":
    main()
