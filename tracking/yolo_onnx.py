"""YOLOv8 on CPU without torch: the ultralytics ONNX export run by OpenVINO or ONNX Runtime, with
ultralytics' own pre- and post-processing redone in NumPy/OpenCV (letterbox to the minimum
stride-aligned rectangle, centre padding of 114, RGB / 255; best class per box, confidence
threshold, per-class NMS, at most 300 boxes, boxes scaled back and clipped).

The export is made once per model file (keyed by its SHA-256) with ultralytics' exporter, which
needs torch; after that, loading reads `model.onnx` and `meta.json` from the cache and imports
neither torch nor ultralytics. `precision="int8"` adds a statically quantised copy (convolutions
only; the detection head's box branch and DFL stay fp32), calibrated on images that ship with
ultralytics, so it is the same model on every machine.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import sys
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from tracking.config import INT8_RECIPE
from tracking.detections import Detections
from tracking.inference import cached_file, calibration_images, cpu_session, import_ultralytics, quantize_int8

log = logging.getLogger("vidtrack." + __name__)

EXPORT_VERSION = 1  # bump when the export changes: cache names change with it
STRIDE = 32
MAX_DET = 300
_MAX_WH = 7680.0  # class offset for per-class NMS, as ultralytics
_PAD = 114


@dataclass(frozen=True)
class Letterbox:
    """How one frame was fitted into the network input: scale `gain`, then `left`/`top` padding."""

    gain_x: float
    gain_y: float
    left: int
    top: int


def letterbox(frame_bgr: np.ndarray, imgsz: int) -> tuple[np.ndarray, Letterbox]:
    """Resize keeping the aspect ratio so the long side is `imgsz`, then pad to the next multiple
    of 32 on each side (ultralytics' `LetterBox(auto=True)` for same-shape batches)."""
    h, w = frame_bgr.shape[:2]
    r = min(imgsz / h, imgsz / w)
    nw, nh = max(round(w * r), 1), max(round(h * r), 1)
    dw, dh = ((imgsz - nw) % STRIDE) / 2, ((imgsz - nh) % STRIDE) / 2
    img = frame_bgr if (w, h) == (nw, nh) else cv2.resize(frame_bgr, (nw, nh), interpolation=cv2.INTER_LINEAR)
    top, bottom, left, right = round(dh - 0.1), round(dh + 0.1), round(dw - 0.1), round(dw + 0.1)
    if top or bottom or left or right:
        img = cv2.copyMakeBorder(img, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(_PAD,) * 3)
    return img, Letterbox(nw / w, nh / h, left, top)


def to_input(images_bgr: list[np.ndarray]) -> np.ndarray:
    """(n, 3, H, W) float32 RGB in [0, 1] from same-size BGR images."""
    x = np.stack(images_bgr)[..., ::-1].transpose(0, 3, 1, 2)
    return np.ascontiguousarray(x, dtype=np.float32) * np.float32(1 / 255)


def nms(xyxy: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Greedy NMS (torchvision semantics: drop boxes with IoU > `iou` to a kept, higher-scoring
    box). Returns kept indices, highest score first."""
    order = np.argsort(-scores, kind="stable")
    areas = (xyxy[:, 2] - xyxy[:, 0]) * (xyxy[:, 3] - xyxy[:, 1])
    keep = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(i)
        lt = np.maximum(xyxy[i, :2], xyxy[rest, :2])
        rb = np.minimum(xyxy[i, 2:], xyxy[rest, 2:])
        inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
        order = rest[inter / (areas[i] + areas[rest] - inter) <= iou]
    return np.asarray(keep, np.int64)


def postprocess(pred: np.ndarray, box: Letterbox, frame_hw: tuple[int, int], conf: float, iou: float,
                classes: list[int] | None) -> Detections:
    """One image's raw output (4 + classes, anchors): cx, cy, w, h in input pixels, then class
    scores; to `Detections` in frame pixels."""
    scores = pred[4:]
    cls = scores.argmax(0)
    best = scores[cls, np.arange(scores.shape[1])]
    keep = best > conf
    if classes is not None:
        keep &= np.isin(cls, classes)
    if not keep.any():
        return Detections.empty()
    cxcywh, best, cls = pred[:4, keep].T, best[keep], cls[keep]
    xyxy = np.concatenate([cxcywh[:, :2] - cxcywh[:, 2:] / 2, cxcywh[:, :2] + cxcywh[:, 2:] / 2], axis=1)
    kept = nms(xyxy + (cls * _MAX_WH)[:, None], best, iou)[:MAX_DET]
    xyxy = (xyxy[kept] - [box.left, box.top, box.left, box.top]) / [box.gain_x, box.gain_y, box.gain_x, box.gain_y]
    h, w = frame_hw
    xyxy = np.clip(xyxy, 0, [w, h, w, h])
    return Detections.from_arrays(xyxy, best[kept], cls[kept])


class ExportedYolo:
    """A YOLOv8 detection model run from its cached ONNX export on a CPU backend."""

    def __init__(self, model_path: Path, model_sha256: str, backend: str, precision: str, imgsz: int) -> None:
        folder = export_onnx(model_path, model_sha256)
        self.names: dict[int, str] = {int(k): v for k, v in json.loads((folder / "meta.json").read_text())["names"]}
        onnx = folder / "model.onnx"
        if precision == "int8":
            onnx = cached_file(f"{folder.name}/model-int8-r{INT8_RECIPE}-{imgsz}.onnx",
                               lambda dst: quantize_int8(folder / "model.onnx", dst, "images",
                                                         _calibration(imgsz), exclude=_fp32_nodes(folder)))
        self.imgsz = imgsz
        self._run = cpu_session(onnx, backend)

    def __call__(self, frames_bgr: list[np.ndarray], conf: float, iou: float,
                 classes: list[int] | None) -> list[Detections]:
        """Frames of one video (same size): one forward pass, one `Detections` per frame."""
        boxed = [letterbox(f, self.imgsz) for f in frames_bgr]
        pred = self._run(to_input([b[0] for b in boxed]))
        return [postprocess(p, b[1], f.shape[:2], conf, iou, classes)
                for p, b, f in zip(pred, boxed, frames_bgr, strict=True)]


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """print() and ultralytics' logger (a handler bound to stdout when it was imported) to stderr."""
    handlers = [h for h in logging.getLogger("ultralytics").handlers if isinstance(h, logging.StreamHandler)]
    streams = [h.setStream(sys.stderr) for h in handlers]
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        for h, stream in zip(handlers, streams, strict=True):
            if stream is not None:
                h.setStream(stream)


def export_onnx(model_path: Path, model_sha256: str) -> Path:
    """The cache folder holding `model.onnx` (dynamic batch and size, fp32) and `meta.json`
    (class names) for this model file; exported with ultralytics the first time."""
    from tracking.inference import cache_root

    folder = cache_root() / f"{model_sha256[:16]}-yolo-onnx-v{EXPORT_VERSION}"
    if (folder / "meta.json").exists():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=folder.name + ".", dir=folder.parent))
    try:
        YOLO = import_ultralytics().YOLO

        shutil.copyfile(model_path, work / "model.pt")  # the exporter writes beside its input
        yolo = YOLO(str(work / "model.pt"), task="detect")
        # the exporter talks on stdout: keep it on stderr, stdout is our commands' output (JSON, tables)
        with warnings.catch_warnings(), _stdout_to_stderr():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit.trace deprecation, from the exporter
            yolo.export(format="onnx", imgsz=640, dynamic=True, half=False, simplify=False, verbose=False)
        (work / "model.pt").unlink()
        (work / "meta.json").write_text(json.dumps({"names": sorted(yolo.names.items()), "source": str(model_path)}))
        try:
            work.rename(folder)
        except OSError:  # another process finished first; use theirs
            log.debug("export of %s already cached at %s", model_path, folder)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return folder


def _fp32_nodes(folder: Path) -> tuple[str, ...]:
    """Convolutions left in fp32 by the int8 recipe:
    - the detection head's box branch and DFL: their outputs are pixel distances, which ranges
      calibrated on a few images would coarsen (class scores and the backbone quantise well);
    - in the neck (after the first upsampling), convolutions fed by a Concat: OpenVINO 2026.4 runs
      those wrongly when quantised (person scores 0.48 low on average on TUD-Campus, while ONNX
      Runtime runs the same file within 0.02); kept fp32, OpenVINO is within 0.02 too."""
    import onnx

    graph = onnx.load(str(folder / "model.onnx"), load_external_data=False).graph
    producer = {out: n.op_type for n in graph.node for out in n.output}
    keep, in_neck = [], False
    for n in graph.node:  # ONNX graphs are stored in topological order
        in_neck = in_neck or n.op_type == "Resize"
        if n.op_type != "Conv":
            continue
        head_box = "/dfl/" in n.name or "/cv2." in n.name
        if head_box or (in_neck and producer.get(n.input[0]) == "Concat"):
            keep.append(n.name)
    return tuple(keep)


def _calibration(imgsz: int) -> Iterator[np.ndarray]:
    """Letterboxed calibration inputs: each shipped image whole, mirrored, and cut in halves."""
    for img in calibration_images():
        h, w = img.shape[:2]
        for view in (img, img[:, ::-1], img[: h // 2 + h // 4], img[h // 4:], img[:, : w // 2 + w // 4],
                     img[:, w // 4:]):
            yield to_input([letterbox(np.ascontiguousarray(view), imgsz)[0]])
