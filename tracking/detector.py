"""YOLOv8 detection, loaded once, batched over frames.

On CPU (backend "openvino" or "onnxruntime") the model runs from its cached ONNX export without
torch or ultralytics (`tracking.yolo_onnx`), in fp32 or, with `precision = "int8"`, quantised.
On CUDA (backend "torch") it runs through ultralytics, in fp16.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

# Before ultralytics is imported: never pip-install at run time; the environment is
# exactly what pyproject.toml declares.
os.environ.setdefault("YOLO_AUTOINSTALL", "false")

import numpy as np

from tracking.config import DetectorConfig
from tracking.detections import Detections
from tracking.inference import cuda_present, import_ultralytics
from tracking.modelref import ModelError, check_local, file_sha256, fix_hint
from tracking.yolo_onnx import ExportedYolo

log = logging.getLogger("vidtrack." + __name__)


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda:0' when CUDA is present, else 'cpu'."""
    if device == "auto":
        return "cuda:0" if cuda_present() else "cpu"
    if device.startswith("cuda") and not cuda_present():
        raise ModelError(f"detector.device={device!r} but CUDA is not available on this machine")
    return "cuda:0" if device == "cuda" else device


def device_name(device: str) -> str:
    """The device as a manifest records it: `cpu`, or `cuda:N (<GPU name>)`."""
    if not device.startswith("cuda"):
        return device
    import torch

    return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"


def load_yolo(spec: str) -> Any:
    """Load an ultralytics model from a local path or a known model name (which
    ultralytics downloads). `s3://` URIs are fetched by the job, not here."""
    YOLO = import_ultralytics().YOLO

    if spec.startswith("s3://"):
        raise ModelError(f"detector model {spec!r} is an S3 URI: fetch it first (the Ray job does this)")
    path = check_local(spec)
    try:
        return YOLO(str(path) if path else spec, task="detect")
    except Exception as e:  # ultralytics raises ConnectionError, FileNotFoundError, RuntimeError...
        raise ModelError(f"detector model {spec!r} could not be loaded ({e.__class__.__name__}: {e}). "
                         f"{fix_hint(spec)}") from e


def _warmup_frames(n: int) -> list[np.ndarray]:
    return [np.full((480, 640, 3), 114, np.uint8)] * n


def _precision_arg(half: bool) -> dict[str, Any]:
    """fp16 on CUDA: ultralytics >= 8.4 spells it `quantize=16` (`half` is deprecated)."""
    from ultralytics.cfg import DEFAULT_CFG_DICT

    if "quantize" in DEFAULT_CFG_DICT:
        return {"quantize": 16 if half else None}
    return {"half": half}


def model_file(spec: str) -> Path:
    """The local file of a detector model: `spec` itself when it is a readable file (no
    ultralytics import), else whatever ultralytics resolves the name to (it may download it)."""
    path = Path(spec).expanduser()
    if path.is_file() and path.stat().st_size > 0:
        return path
    model = load_yolo(spec)  # raises ModelError naming the model and the fix
    return Path(str(getattr(model, "ckpt_path", None) or spec))


class Detector:
    """Batched YOLOv8. Call with a list of BGR frames; get one `Detections` per frame."""

    def __init__(self, cfg: DetectorConfig) -> None:
        self.cfg = cfg
        self.device = resolve_device(cfg.device)
        self.device_name = device_name(self.device)
        self.half = cfg.half and self.device.startswith("cuda")
        self.backend = cfg.backend
        if self.backend == "auto":
            self.backend = "torch" if self.device.startswith("cuda") else "openvino"
        if self.backend != "torch" and self.device != "cpu":
            raise ModelError(f"detector.backend={self.backend!r} runs on CPU; use 'torch' on CUDA")
        if self.backend == "torch" and cfg.precision != "fp32":
            raise ModelError(f"detector.precision={cfg.precision!r} needs a CPU backend (openvino, onnxruntime)")
        self.model_path = model_file(cfg.model)
        self.model_sha256 = file_sha256(self.model_path)
        if self.backend == "torch":
            self._yolo = load_yolo(str(self.model_path))
            names = self._yolo.names
        else:
            self._exported = self._load_exported()
            names = self._exported.names
        self.names: dict[int, str] = {int(k): str(v) for k, v in names.items()}
        self.class_ids = self._resolve_classes(cfg.classes)
        self(_warmup_frames(cfg.batch_size))  # build the backend's kernels at load, not in the first video

    def _load_exported(self) -> ExportedYolo:
        try:
            return ExportedYolo(self.model_path, self.model_sha256, self.backend, self.cfg.precision, self.cfg.imgsz)
        except Exception as e:  # the exporter and the runtimes raise many unrelated types
            raise ModelError(f"could not export or load {self.cfg.model!r} for {self.backend} "
                             f"({e.__class__.__name__}: {e}); use --set detector.backend=torch") from e

    def _resolve_classes(self, classes: tuple[str | int, ...]) -> list[int] | None:
        if not classes:
            return None
        by_name = {v: k for k, v in self.names.items()}
        ids = []
        for c in classes:
            if isinstance(c, int):
                if c not in self.names:
                    raise ModelError(f"detector.classes: id {c} is not a class of {self.cfg.model!r}")
                ids.append(c)
            elif c in by_name:
                ids.append(by_name[c])
            else:
                raise ModelError(f"detector.classes: {c!r} is not a class of {self.cfg.model!r} "
                                 f"(e.g. {sorted(by_name)[:5]})")
        return sorted(set(ids))

    def __call__(self, frames: list[np.ndarray]) -> list[Detections]:
        if not frames:
            return []
        if self.backend != "torch":
            return self._exported(frames, self.cfg.conf, self.cfg.iou, self.class_ids)
        results = self._yolo.predict(frames, imgsz=self.cfg.imgsz, conf=self.cfg.conf, iou=self.cfg.iou,
                                     classes=self.class_ids, device=self.device, verbose=False,
                                     batch=len(frames), **_precision_arg(self.half))
        out = []
        for r in results:
            b = r.boxes
            if b is None or len(b) == 0:
                out.append(Detections.empty())
                continue
            out.append(Detections.from_arrays(b.xyxy.cpu().numpy(), b.conf.cpu().numpy(),
                                              b.cls.cpu().numpy().astype(np.int32)))
        return out
