"""The benches read what the project writes and find what they time (functional only: no timing)."""

import json
import tarfile

from bench import loader


def test_bench_shards_are_the_writers_format_and_load(tmp_path):
    record_bytes = loader.write_shards(tmp_path)
    manifest = json.loads((tmp_path / "coco" / "train" / "manifest.json").read_text())
    assert manifest["samples"] == loader.IMAGES and len(manifest["shards"]) == loader.SHARDS
    assert manifest["ignore_masks"] == loader.IMAGES // 3
    assert 20_000 < record_bytes < 400_000  # COCO-like JPEG sizes
    with tarfile.open(tmp_path / "coco" / "train" / manifest["shards"][0]["name"]) as tar:
        members = tar.getmembers()
    assert all(m.mtime == 0 and not m.pax_headers for m in members)  # plain ustar, as make shards writes
    batch = next(iter(loader._datamodule(tmp_path).train_dataloader()))
    assert tuple(batch["image"].shape) == (loader.BATCH, 3, loader.CROP, loader.CROP)
    assert tuple(batch["keypoints"].shape[2:]) == (135, 3)
    assert (batch["keypoints"][..., 2] <= 1).any()  # labelled people arrive


def test_predict_bench_finds_the_crowd_and_splits_its_time():
    from bench import predict

    figures = predict.run(repeats=1)
    assert figures["predict_people_found"] == predict.PEOPLE
    parts = [figures[f"predict_{p}_ms"] for p in ("network", "decode", "write")]
    assert all(p > 0 for p in parts) and abs(sum(parts) - figures["predict_ms_per_image"]) < 0.2


def test_gpu_check_runs_its_training_measurement_on_the_cpu(tmp_path):
    """The GPU check's path (shards, a few timed training steps, the figures) on a tiny CPU setup."""
    from bench import gpu_check

    cfg = dict(gpu_check.DEFAULTS, device="cpu", model="tiny", size=64, batch=2, steps=6, warmup=2,
               big_batch=0, workers=0, precision="32-true", images=20, tests=False, runtime=False,
               latency=False, out_dir=str(tmp_path))
    figures = gpu_check.check(cfg)
    train = figures["train"]
    assert train["steps"] == 6 and train["images_per_s"] > 0 and 0 <= train["data_wait_share"] < 1
    assert train["forward_gflops"] > 0 and train["mfu"] is None  # no GPU peak to compare against
    assert set(figures["goals"]) == {"images_per_s>=400_or_mfu>=0.45", "data_wait_share<=0.05"}
