from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import loaded_after
from tracking.config import TrackerConfig
from tracking.detections import Detections
from tracking.tracker import VideoTracker
from tracking.tracks import TrackState


def _det(*boxes: tuple[float, float, float, float]) -> Detections:
    return Detections.from_arrays(np.array(boxes, np.float32), np.full(len(boxes), 0.9), np.zeros(len(boxes)))


def _emb(n: int, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, 16)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_ids_start_at_one_per_tracker_and_confirm_after_n_init() -> None:
    for _ in range(2):  # a second tracker starts from 1 again: no class-level counter
        t = VideoTracker(TrackerConfig(n_init=3))
        emb = _emb(2)
        states = []
        for i in range(3):
            states = t.update(_det((10 + i, 10, 50 + i, 90), (200, 10, 240, 90)), emb)
        assert sorted(s.track_id for s in states) == [1, 2]
        assert all(s.confirmed and s.matched for s in states)
        assert states[0].confidence == pytest.approx(0.9)


def test_empty_frames_advance_tracker_until_deleted() -> None:
    t = VideoTracker(TrackerConfig(n_init=1, max_age=3))
    for _ in range(2):  # a new track is tentative until its second match
        t.update(_det((10, 10, 50, 90)), _emb(1))
    s = t.update(Detections.empty(), _emb(0))
    assert len(s) == 1 and not s[0].matched and np.isnan(s[0].confidence)
    for _ in range(4):
        s = t.update(Detections.empty(), _emb(0))
    assert s == []


def test_mismatched_embeddings_rejected() -> None:
    with pytest.raises(ValueError, match="2 detections but 1 embeddings"):
        VideoTracker(TrackerConfig()).update(_det((0, 0, 10, 10), (20, 20, 30, 30)), _emb(1))


@pytest.mark.parametrize("xyxy, keep", [
    ((10, 10, 50, 50), True),
    ((-30, -30, -1, -1), False),   # entirely outside the frame
    ((630, 10, 700, 50), True),    # partly outside: clipped
    ((640, 10, 700, 50), False),   # starts at the right edge: empty crop
    ((10.2, 10, 10.9, 50), False),  # under a pixel wide once truncated to int
])
def test_usable_boxes(xyxy: tuple[float, float, float, float], keep: bool) -> None:
    assert len(_det(xyxy).usable(640, 480)) == int(keep)


def test_detections_shape_checked() -> None:
    with pytest.raises(ValueError, match="xyxy"):
        Detections(np.zeros((2, 3), np.float32), np.zeros(2, np.float32), np.zeros(2, np.int32))


def test_track_consumers_do_not_import_the_tracker_library() -> None:
    """The Parquet writer (`TrackRows`) and the annotator (`TrackState`s) take tracks without
    depending on deep-sort-realtime (checked in a fresh interpreter: this session has imported it)."""
    loaded, _ = loaded_after("import tracking.records, tracking.annotate, tracking.tracks",
                             ("deep_sort_realtime", "tracking.tracker", "tracking.refine"))
    assert loaded == []
    assert VideoTracker(TrackerConfig()).update(_det((0, 0, 10, 10)), _emb(1))[0].__class__ is TrackState


def test_low_score_detections_extend_tracks_but_never_start_one() -> None:
    """BYTE-style second association (tracker.high_conf): a detection under the threshold
    keeps a confirmed track matched; one far from any track starts nothing."""
    t = VideoTracker(TrackerConfig(n_init=2, high_conf=0.5))
    for i in range(3):
        states = t.update(_det((10 + i, 10, 50 + i, 90)), _emb(1))
    assert [(s.track_id, s.confirmed) for s in states] == [(1, True)]
    low = Detections.from_arrays(np.array([[13, 10, 53, 90], [300, 10, 340, 90]], np.float32),
                                 np.array([0.3, 0.3]), np.zeros(2))
    for _ in range(4):
        states = t.update(low, _emb(2, seed=1))
        assert [(s.track_id, s.matched, s.det_index) for s in states] == [(1, True, 0)]
        assert states[0].confidence == pytest.approx(0.3)
    plain = VideoTracker(TrackerConfig(n_init=2))  # without it, the same detections are ordinary ones
    for _ in range(3):
        states = plain.update(low, _emb(2, seed=1))
    assert sorted(s.track_id for s in states) == [1, 2]


def test_no_track_takes_a_group_box() -> None:
    """A box around two people found on their own (tracker.group_box_cover, default 0.6) starts
    no track and extends none, also when one of the two is missed; ids stay 1..N."""
    people, group = [(881, 123, 933, 296), (915, 131, 961, 293)], (889, 123, 961, 294)
    conf = np.array([0.48, 0.37, 0.42], np.float32)
    t, emb = VideoTracker(TrackerConfig(n_init=1)), _emb(3)
    for _ in range(3):
        states = t.update(Detections.from_arrays(np.array([*people, group], np.float32), conf, np.zeros(3)), emb)
        assert sorted((s.track_id, s.det_index) for s in states) == [(1, 0), (2, 1)]
    alone = t.update(Detections.from_arrays(np.array([people[0], group], np.float32), conf[[0, 2]],
                                            np.zeros(2)), emb[[0, 2]])  # one person inside: not a group
    assert {s.det_index for s in alone} == {0, 1}
    off = VideoTracker(TrackerConfig(n_init=1, group_box_cover=0.0))
    states = off.update(Detections.from_arrays(np.array([*people, group], np.float32), conf, np.zeros(3)), emb)
    assert sorted(s.det_index for s in states) == [0, 1, 2]
