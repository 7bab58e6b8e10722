"""The person re-identification embedder, appearance per class group, and their identities."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.conftest import SHARED, TUD
from tracking.appearance import ClassAppearance, appearance_sha256, class_groups
from tracking.config import EmbedderConfig, PipelineConfig, TrackerConfig
from tracking.detections import Detections
from tracking.embedder import weights_sha256
from tracking.modelref import ModelError
from tracking.reid import ir_files, reid_sha256
from tracking.tracker import VideoTracker

REID = SHARED / "models" / "reid" / "person-reidentification-retail-0288.xml"
NAMES = {0: "person", 2: "car"}
BOXES = np.array([[10.7, 20.2, 80.9, 200.5], [300, 100, 360, 330], [600, 50, 700, 300]])


def test_features_equal_the_networks_own_run_on_each_crop() -> None:
    """Batched features equal the IR as shipped (batch 1), run on each crop with the IR's own
    preprocessing: BGR, 0-255, resized to 256x128, NCHW float32."""
    import openvino as ov

    frame = cv2.imread(str(TUD / "img1" / "000010.jpg"))
    app = ClassAppearance(EmbedderConfig(reid_model=str(REID)), names=NAMES, kept_class_ids=[0])
    ours = app([frame], [Detections.from_arrays(BOXES, np.ones(3), np.zeros(3))])[0]
    assert app.general is None and ours.shape == (3, 256)
    net = ov.Core().compile_model(str(REID), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    ref = []
    for x1, y1, x2, y2 in Detections.from_arrays(BOXES, np.ones(3), np.zeros(3)).clipped_crop_boxes(640, 480):
        crop = cv2.resize(frame[y1:y2, x1:x2], (128, 256), interpolation=cv2.INTER_LINEAR)
        ref.append(np.array(net([crop.transpose(2, 0, 1)[None].astype(np.float32)])[0])[0])
    np.testing.assert_allclose(ours, np.stack(ref), rtol=1e-4, atol=1e-4)


def test_people_get_reid_rows_and_other_classes_the_general_embedder() -> None:
    """With both networks, a person's row is its re-ID embedding (zero beyond 256 values) and a
    car's is MobileNetV2's 1280 values."""
    frame = cv2.imread(str(TUD / "img1" / "000010.jpg"))
    dets = Detections.from_arrays(BOXES, np.ones(3), np.array([0, 2, 0]))
    app = ClassAppearance(EmbedderConfig(reid_model=str(REID)), names=NAMES, kept_class_ids=None)
    out = app([frame], [dets])[0]
    assert out.shape == (3, 1280)
    people = ClassAppearance(EmbedderConfig(reid_model=str(REID)), names=NAMES, kept_class_ids=[0])
    np.testing.assert_allclose(out[[0, 2], :256], people([frame], [dets[np.array([True, False, True])]])[0],
                               rtol=1e-5, atol=1e-5)
    assert not out[[0, 2], 256:].any() and np.count_nonzero(out[1, 256:]) > 100


def _det(box: tuple[float, float, float, float], cls: int) -> Detections:
    return Detections.from_arrays(np.array([box], np.float32), np.ones(1), np.array([cls]))


def test_a_person_track_never_takes_a_car_detection() -> None:
    """A person walks for three frames; then a car is detected on the same spot with the same
    appearance. Matching across classes (deep-sort-realtime's own) hands the person's track to
    the car; in class groups the car starts its own track, numbered next."""
    cfg = TrackerConfig(n_init=1, max_age=5)
    emb = np.ones((1, 8), np.float32)
    person, car = _det((100, 100, 150, 250), 0), _det((101, 100, 151, 250), 2)
    ids = {}
    for name, groups in (("across", None), ("grouped", class_groups(PipelineConfig(), NAMES))):
        t = VideoTracker(cfg, 25.0, groups)
        for _ in range(3):
            assert [s.track_id for s in t.update(person, emb)] == [1]
        ids[name] = {(s.track_id, s.class_id) for s in t.update(car, emb) if s.matched}
    assert ids["across"] == {(1, 2)}
    assert ids["grouped"] == {(2, 2)}


def test_track_ids_run_1_to_n_in_order_of_first_appearance_over_groups() -> None:
    t = VideoTracker(TrackerConfig(n_init=1), 25.0, {0: -1})
    emb = np.ones((1, 8), np.float32)
    first = t.update(_det((0, 0, 10, 10), 2), emb)
    second = t.update(Detections.from_arrays(np.array([[0, 0, 10, 10], [50, 50, 90, 150]], np.float32),
                                             np.ones(2), np.array([2, 0])), np.ones((2, 8), np.float32))
    assert [s.track_id for s in first] == [1]
    assert sorted((s.track_id, s.class_id, s.det_index) for s in second) == [(1, 2, 0), (2, 0, 1)]


def test_identities_name_the_network_and_pinning_the_old_embedder_keeps_old_ids() -> None:
    """The re-ID network's bytes enter both ids (not its path); `reid_model = ""` with
    `tracker.per_class = false` (and `tracker.group_box_cover = 0`, added later) reproduces 0.2's
    ids (values computed at 0.2's commit)."""
    old = PipelineConfig.from_dict({"embedder": {"reid_model": ""},
                                   "tracker": {"per_class": False, "group_box_cover": 0.0}})
    assert old.params_id("a" * 64) == "9a78b6744c53"
    assert old.detections_id("a" * 64, "b" * 64) == "9ea4f66fece8"
    assert appearance_sha256(old.embedder) == weights_sha256()
    new = PipelineConfig.from_dict({"embedder": {"reid_model": str(REID)}})
    sha = reid_sha256(str(REID))
    assert new.params_id("a" * 64, sha) != old.params_id("a" * 64)
    assert new.detections_id("a" * 64, appearance_sha256(new.embedder)) != old.detections_id("a" * 64, weights_sha256())
    moved = PipelineConfig.from_dict({"embedder": {"reid_model": "/elsewhere/net.xml"}})
    assert moved.params_id("a" * 64, sha) == new.params_id("a" * 64, sha)
    with pytest.raises(ValueError, match="reid_sha256"):
        new.params_id("a" * 64)


def test_a_reid_model_that_cannot_be_had_names_itself_and_the_fix(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("VIDTRACK_MODELS", str(tmp_path))
    with pytest.raises(ModelError, match=r"person-reidentification-retail-0288.*No hub serves it"):
        ir_files("person-reidentification-retail-0288")
    (tmp_path / "net.xml").write_text("<net/>")
    with pytest.raises(ModelError, match=r"net\.bin is missing"):
        ir_files(str(tmp_path / "net.xml"))
    with pytest.raises(ModelError, match="expected an OpenVINO IR"):
        ir_files(str(tmp_path / "net.onnx"))
    for suffix in (".xml", ".bin"):
        (tmp_path / f"person-reidentification-retail-0288{suffix}").write_bytes(REID.with_suffix(suffix).read_bytes())
    assert ir_files("person-reidentification-retail-0288")[0] == tmp_path / "person-reidentification-retail-0288.xml"
