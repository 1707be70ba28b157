"""Entry point: score predictions with the COCO-WholeBody protocol (the BODY_135 family) or the plain COCO
keypoint protocol with the layout's OKS sigmas (any other layout; several categories are scored as one).

``python -m src.evaluate gt=GT.json pred=PRED.json out=METRICS.json`` (``layout=NAME`` for another layout
than BODY_135) prints the per-part table and writes
``{part: {stat: value}}`` to ``out``. The file mode lives in :func:`evaluate_files`; ``main`` only dispatches,
so other modes (e.g. scoring a checkpoint) can sit beside it in the same entry.

Checkpoint mode (:func:`evaluate_checkpoint`) runs a trained network (a ``.ckpt``, or an exported ``.onnx`` /
``.pt``) through ``src.inference`` first:
``python -m src.evaluate ckpt_path=CKPT data=synthetic`` (the data preset's val shards and their gt.json) or
``python -m src.evaluate ckpt_path=CKPT gt=GT.json images=DIR`` (a COCO(-WholeBody) json and its images);
the layout is the checkpoint's (or the exported file's); ``pred_out=PRED.json`` also writes the result records
that were scored.
``height=480`` (OpenPose's single scale) or ``scales=[2,1.5,1,0.5]`` (the paper's 960/720/480/240, averaged);
``decoder.*`` overrides the decoder (``conf/decoder``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from src.core.cli import ensure_writable, report_errors, run
from src.core.skeleton import Layout
from src.evaluation.evaluator import evaluate, format_table, load_predictions

IMAGE_SOURCE = "images"  # the source name of images=DIR samples


def evaluate_files(gt: str | Path, pred: str | Path, out: str | Path, layout="body135"
                   ) -> dict[str, dict[str, float]]:
    """Score the result file ``pred`` against ``gt`` for ``layout``, print the table, write the metrics JSON
    to ``out``."""
    metrics = evaluate(gt, load_predictions(pred), Layout.of(layout))
    print(format_table(metrics))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(metrics, indent=2) + "\n")
    print(f"metrics written to {out}")
    return metrics


def _image_batches(gt_path: str | Path, images: str | Path, height: int, layout: Layout):
    """COCO(-WholeBody) json + image folder -> validation batches (one image each) at ``height``."""
    from datamodules.augment import eval_sample
    from datamodules.samples import collate_eval, labelled_of
    from src.core import image_io

    gt = json.loads(Path(gt_path).read_text())
    for info in gt["images"]:
        path = Path(images) / info["file_name"]
        try:
            image = image_io.read(path)
        except image_io.ImageError as err:
            raise FileNotFoundError(f"images={images}: {err} (image_id {info['id']})") from None
        out = eval_sample(image, {"people": []}, None, height, num_keypoints=layout.num_keypoints)
        out.update(image_id=int(info["id"]), key=str(info["id"]), source=IMAGE_SOURCE, gt=str(gt_path),
                   labelled=labelled_of([], True, layout))
        yield collate_eval([out])


def evaluate_checkpoint(cfg: DictConfig) -> dict[str, dict[str, float]]:
    """Run ``cfg.ckpt_path`` (a checkpoint or an exported file) over val shards (``data=``) or ``gt`` +
    ``images`` through ``src.inference``; score, print, write ``out``."""
    import torch
    from hydra.utils import instantiate

    from src.core import checkpoint
    from src.decoder.decode import decoder_for
    from src.evaluation.validation import ValidationCollector
    from src.inference import CHECKPOINT_SUFFIXES, Inference, load_model

    ensure_writable(cfg.out, "out")  # before the model runs over every image
    if cfg.get("pred_out"):
        ensure_writable(cfg.pred_out, "pred_out")
    height = cfg.height
    with checkpoint.trusted(bool(cfg.get("trust_checkpoint", False))):
        if height is None and Path(cfg.ckpt_path).suffix.lower() in CHECKPOINT_SUFFIXES:
            height = (checkpoint.read(cfg.ckpt_path).get("hyper_parameters") or {}).get("input_size")
        if height is None:
            raise ValueError(f"ckpt_path={cfg.ckpt_path} records no input size: give height=...")
        height = int(height)
        model = load_model(cfg.ckpt_path, cfg.device)
    layout = model.layout
    inference = Inference(model, decoder_for(cfg.decoder, layout), list(cfg.scales), cfg.device, cfg.flip,
                          cfg.precision)
    if cfg.get("data") is not None:
        datamodule = instantiate(cfg.data, _partial_=True)(val_size=height, targets=None, layout=layout)
        if not datamodule.val_gt:
            raise FileNotFoundError(f"data: no val shards found for {list(cfg.data.val or {})}")
        batches = datamodule.val_dataloader()
    elif cfg.gt is not None and cfg.images is not None:
        batches = _image_batches(cfg.gt, cfg.images, height, layout.shard_layout)
    else:
        raise ValueError("ckpt_path needs data=<preset> (val shards) or gt=GT.json images=DIR")
    collector = ValidationCollector(num_images=0, layout=layout)
    with torch.inference_mode():
        for batch in batches:
            people, per_scale = inference.batch(batch)
            collector.add(batch, people, per_scale[0])
    results = collector.evaluate()
    out = Path(cfg.out)
    for i, (source, (metrics, count, _)) in enumerate(results.items()):
        print(f"{source}: {count} images, height {height}, scales {inference.scales}, flip {inference.flip}")
        print(format_table(metrics))
        path = out if i == 0 else out.with_name(f"{out.stem}_{source}{out.suffix}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(metrics, indent=2) + "\n")
        print(f"metrics written to {path}")
    if cfg.get("pred_out"):
        preds = [r for source in collector.records.values() for recs in source.values() for r in recs]
        Path(cfg.pred_out).write_text(json.dumps(preds))
        print(f"{len(preds)} result records written to {cfg.pred_out}")
    return next(iter(results.values()))[0]


@hydra.main(version_base="1.3", config_path="../conf", config_name="evaluate")
@report_errors
def main(cfg: DictConfig) -> None:
    if cfg.ckpt_path is not None:
        evaluate_checkpoint(cfg)  # an error: one line from report_errors
        return
    if cfg.gt is None or cfg.pred is None:
        sys.exit("error: give both gt=GT.json and pred=PRED.json (and optionally out=METRICS.json)")
    if cfg.out:
        ensure_writable(cfg.out, "out")
    evaluate_files(cfg.gt, cfg.pred, cfg.out, cfg.layout)


if __name__ == "__main__":
    run(main)
