"""The torch-free CPU detector (tracking/yolo_onnx.py) against ultralytics itself, and the
pieces it is made of, on real frames and with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import MODEL, SHARED, TUD, read_images
from tracking.config import DetectorConfig, EmbedderConfig
from tracking.detector import Detector
from tracking.inference import inference_threads, set_inference_threads
from tracking.modelref import ModelError
from tracking.yolo_onnx import letterbox, nms, postprocess


@pytest.fixture(scope="module")
def torch_detector() -> Detector:
    return Detector(DetectorConfig(model=str(MODEL), backend="torch", batch_size=4))


@pytest.mark.parametrize("backend", ["openvino", "onnxruntime"])
@pytest.mark.parametrize("folder", [TUD, SHARED / "data" / "mot" / "MOT17-mini" / "MOT17-02-FRCNN"])
def test_exported_matches_ultralytics(torch_detector: Detector, backend: str, folder) -> None:
    """Same boxes, scores and classes as ultralytics' own torch predictor (640x480 and 1920x1080)."""
    frames = read_images(folder / "img1", 4)
    ours = Detector(DetectorConfig(model=str(MODEL), backend=backend, batch_size=4))(frames)
    ref = torch_detector(frames)
    for a, b in zip(ours, ref, strict=True):
        assert len(a) == len(b) > 0
        np.testing.assert_allclose(a.xyxy, b.xyxy, atol=1e-2)
        np.testing.assert_allclose(a.confidence, b.confidence, atol=1e-4)
        np.testing.assert_array_equal(a.class_id, b.class_id)


def test_int8_detector_finds_the_same_people() -> None:
    """int8 is another model (scores move a little) that finds the people fp32 finds, with their
    scores: OpenVINO once ran this quantised graph with person scores 0.48 low on average."""
    frames = read_images(TUD / "img1", 4)
    cfg = DetectorConfig(model=str(MODEL), classes=("person",), batch_size=4)
    fp32 = Detector(cfg)(frames)
    int8 = Detector(DetectorConfig(**{**cfg.__dict__, "precision": "int8"}))(frames)
    for a, b in zip(int8, fp32, strict=True):
        assert abs(len(a) - len(b)) <= 2
        assert not np.allclose(np.sort(a.confidence)[-1], np.sort(b.confidence)[-1], atol=1e-4)
        for box, conf in zip(b.xyxy[b.confidence > 0.5], b.confidence[b.confidence > 0.5], strict=True):
            ious = [_iou(box, other) for other in a.xyxy]
            best = int(np.argmax(ious))
            assert ious[best] > 0.7, ious
            assert abs(a.confidence[best] - conf) < 0.1, (a.confidence[best], conf)


def test_int8_refused_on_torch_backend() -> None:
    with pytest.raises(ModelError, match=r"detector\.precision='int8'"):
        Detector(DetectorConfig(model=str(MODEL), backend="torch", precision="int8"))


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    lt, rb = np.maximum(a[:2], b[:2]), np.minimum(a[2:], b[2:])
    inter = float(np.prod(np.clip(rb - lt, 0, None)))
    return inter / (float(np.prod(a[2:] - a[:2])) + float(np.prod(b[2:] - b[:2])) - inter)


@pytest.mark.parametrize(("hw", "imgsz", "out_hw", "pad_lt"), [
    ((480, 640), 640, (480, 640), (0, 0)),     # already stride-aligned: untouched
    ((1080, 1920), 640, (384, 640), (0, 12)),  # 1920x1080 -> 640x360, padded to 384
    ((432, 768), 320, (192, 320), (0, 6)),     # 320x180 -> 192 high
    ((640, 360), 640, (640, 384), (12, 0)),    # portrait: padded left and right
])
def test_letterbox_minimum_rectangle(hw, imgsz, out_hw, pad_lt) -> None:
    img, box = letterbox(np.zeros((*hw, 3), np.uint8), imgsz)
    assert img.shape[:2] == out_hw
    assert (box.left, box.top) == pad_lt
    if pad_lt != (0, 0):
        assert img[0, 0, 0] == 114 and img[-1, -1, 0] == 114


def test_nms_keeps_best_of_overlapping_boxes() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 9.9]], np.float32)
    scores = np.array([0.5, 0.9, 0.8, 0.4], np.float32)
    # IoU(1, 0) = 81/119 = 0.68, IoU(1, 3) = 0.67, IoU(0, 3) = 0.99
    assert nms(boxes, scores, 0.5).tolist() == [1, 2]
    assert nms(boxes, scores, 0.7).tolist() == [1, 2, 0]
    assert nms(boxes, scores, 0.995).tolist() == [1, 2, 0, 3]


def test_postprocess_scales_back_and_filters_classes() -> None:
    """Two boxes of class 0 and 2 in a 1920x1080 frame letterboxed to 640x384 (gain 1/3, top pad 12)."""
    _, box = letterbox(np.zeros((1080, 1920, 3), np.uint8), 640)
    pred = np.zeros((84, 3), np.float32)
    pred[:4, 0] = [100, 112, 20, 40]   # cx, cy, w, h in input pixels
    pred[4, 0] = 0.9
    pred[:4, 1] = [300, 200, 60, 60]
    pred[6, 1] = 0.8
    pred[4, 2] = 0.1                   # below conf
    d = postprocess(pred, box, (1080, 1920), conf=0.25, iou=0.7, classes=None)
    np.testing.assert_allclose(d.xyxy[0], [270, 240, 330, 360], atol=1e-3)
    assert d.class_id.tolist() == [0, 2]
    only_cars = postprocess(pred, box, (1080, 1920), conf=0.25, iou=0.7, classes=[2])
    assert only_cars.class_id.tolist() == [2]


def test_threads_follow_the_actor_share(monkeypatch: pytest.MonkeyPatch) -> None:
    import tracking.inference as inf

    monkeypatch.setattr(inf, "_threads", None)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # what Ray sets for an actor with num_cpus=3
    assert inference_threads() == 3
    set_inference_threads(1)  # what the actor sets from --cpus-per-actor
    assert inference_threads() == 1
    with pytest.raises(ValueError, match="inference threads"):
        set_inference_threads(0)


def test_openvino_pins_threads_only_in_a_process_that_has_every_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pinned, OpenVINO puts every process's threads on the same first cores: two 1-thread actors
    on a 2-core node ran on one core. An actor holding a share of the node is not pinned; the
    setting is one OpenVINO accepts on a real compiled model."""
    import openvino as ov

    import tracking.inference as inf
    from tracking.embedder import AppearanceEmbedder

    monkeypatch.setattr(inf, "usable_cpus", lambda: 4)
    assert inf.openvino_properties(1)["ENABLE_CPU_PINNING"] is False
    assert inf.openvino_properties(2)["ENABLE_CPU_PINNING"] is False
    assert inf.openvino_properties(4)["ENABLE_CPU_PINNING"] is True
    onnx = AppearanceEmbedder(EmbedderConfig())._onnx()
    for threads in (1, 4):
        compiled = ov.Core().compile_model(str(onnx), "CPU", inf.openvino_properties(threads))
        assert compiled.get_property("ENABLE_CPU_PINNING") is (threads == 4)
        if threads == 1:  # (OpenVINO caps the count at the machine's cores)
            assert compiled.get_property("INFERENCE_NUM_THREADS") == 1


def test_ultralytics_import_leaves_thread_count_alone() -> None:
    """ultralytics sets OMP_NUM_THREADS=1 on import; loading it (to export a model on a cold cache)
    must not hold the CPU backends loaded afterwards to one thread."""
    import os

    from tests.conftest import fresh_python

    code = ("import os\nfrom tracking.inference import import_ultralytics, inference_threads\n"
            "n = inference_threads(); import_ultralytics()\n"
            "print(n, inference_threads(), os.environ.get('OMP_NUM_THREADS'))\n")
    r = fresh_python(code, {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"})
    assert r.returncode == 0, r.stderr
    n, after, omp = r.stdout.split()
    assert n == after and omp == "None", r.stdout
