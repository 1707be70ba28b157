"""The runtime-vs-people benchmark runs end to end on tiny settings (functional only: no timing asserted)."""

import json

import numpy as np

from bench import cascade, runtime
from bench.scenes import crowd


def test_crowd_places_every_person_inside_the_image():
    image, people = crowd(7, (96, 128), seed=1)
    assert image.shape == (96, 128, 3) and image.dtype == np.uint8
    assert people.shape == (7, 135, 3)
    assert (people[..., 2] == 1).all()
    assert people[..., 0].min() >= 0 and people[..., 0].max() < 128
    assert people[..., 1].min() >= 0 and people[..., 1].max() < 96


def test_boxes_follow_the_body_keypoints():
    _, people = crowd(1, (256, 256))
    kp = people[0]
    cx, cy, side = cascade.face_box(kp)
    assert abs(cx - kp[:5, 0].mean()) < 1e-3 and side >= 16
    x, y, side = cascade.hand_box(kp, "left")
    wrist, elbow = kp[cascade.LWRIST, :2], kp[cascade.LELBOW, :2]
    assert np.linalg.norm(np.array([x, y]) - wrist) < np.linalg.norm(wrist - elbow)
    kp[cascade.LELBOW, 2] = 0  # no elbow: OpenPose cannot place the hand box
    assert cascade.hand_box(kp, "left") is None


def test_bench_writes_table_plot_and_ratios(tmp_path, capsys):
    summary = runtime.run([
        "model@single=tiny", "model@body=tiny", "image_size=[64,96]", "people=[1,3]", "repeats=2",
        "cascade_repeats=1", "crop_size=32", "crop_stages=[[1,8,16]]", "threads=1", f"out_dir={tmp_path}"])
    assert set(summary) >= {"single_ratio_3_1", "cascade_ratio_3_1"}
    result = json.loads((tmp_path / "runtime.json").read_text())
    rows = {r["people"]: r for r in result["rows"]}
    for n in (1, 3):
        # the decoder recovers every drawn person from the GT maps; the cascade crops each face and hand
        assert rows[n]["single_found"] == n
        assert (rows[n]["cascade_people"], rows[n]["faces"], rows[n]["hands"]) == (n, n, 2 * n)
        assert rows[n]["single_ms"] > 0 and rows[n]["cascade_ms"] > 0
    assert result["networks"]["body"]["gflops"] > 0
    assert (tmp_path / "runtime.png").stat().st_size > 1000
    assert (tmp_path / "runtime.md").read_text().count("\n") == 4
