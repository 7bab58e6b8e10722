"""YOLOv8 detection through ultralytics: loaded once, batched over frames."""

from __future__ import annotations

import hashlib
import logging
import os
import warnings
from pathlib import Path
from typing import Any

# Before ultralytics is imported: never pip-install at run time; the environment is
# exactly what pyproject.toml declares.
os.environ.setdefault("YOLO_AUTOINSTALL", "false")

import numpy as np
import torch

from tracking.config import DetectorConfig
from tracking.detections import Detections

log = logging.getLogger(__name__)


class ModelError(RuntimeError):
    """The detector model cannot be found, downloaded or loaded."""


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda:0' when CUDA is present, else 'cpu'."""
    if device == "auto":
        return "cuda:0" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError(f"detector.device={device!r} but CUDA is not available on this machine")
    return "cuda:0" if device == "cuda" else device


def file_sha256(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fix_hint(spec: str) -> str:
    return ("Without internet, give a local file or an s3:// URI: "
            f"--set detector.model=/path/to/{Path(spec).name or 'yolov8n.pt'}")


def load_yolo(spec: str) -> Any:
    """Load an ultralytics model from a local path or a known model name (which
    ultralytics downloads). `s3://` URIs are fetched by the job, not here."""
    from ultralytics import YOLO

    if spec.startswith("s3://"):
        raise ModelError(f"detector model {spec!r} is an S3 URI: fetch it first (the Ray job does this)")
    path = Path(spec).expanduser()
    looks_like_path = path.is_absolute() or os.sep in spec or spec.startswith(".")
    if looks_like_path and not path.exists():
        raise ModelError(f"detector model {spec!r}: no such file. {_fix_hint(spec)}")
    if path.exists() and path.stat().st_size == 0:
        raise ModelError(f"detector model {spec!r}: file is empty. {_fix_hint(spec)}")
    try:
        return YOLO(str(path) if path.exists() else spec, task="detect")
    except Exception as e:  # ultralytics raises ConnectionError, FileNotFoundError, RuntimeError...
        raise ModelError(f"detector model {spec!r} could not be loaded ({e.__class__.__name__}: {e}). "
                         f"{_fix_hint(spec)}") from e


def _warmup_frames(n: int) -> list[np.ndarray]:
    return [np.full((480, 640, 3), 114, np.uint8)] * n


def _precision_arg(half: bool) -> dict[str, Any]:
    """fp16 on CUDA: ultralytics >= 8.4 spells it `quantize=16` (`half` is deprecated)."""
    from ultralytics.cfg import DEFAULT_CFG_DICT

    if "quantize" in DEFAULT_CFG_DICT:
        return {"quantize": 16 if half else None}
    return {"half": half}


class Detector:
    """Batched YOLOv8. Call with a list of BGR frames; get one `Detections` per frame."""

    def __init__(self, cfg: DetectorConfig) -> None:
        self.cfg = cfg
        self.device = resolve_device(cfg.device)
        self.half = cfg.half and self.device.startswith("cuda")
        model = load_yolo(cfg.model)
        self.model_path = Path(str(getattr(model, "ckpt_path", None) or cfg.model))
        self.model_sha256 = file_sha256(self.model_path) if self.model_path.is_file() else ""
        self.names: dict[int, str] = {int(k): str(v) for k, v in model.names.items()}
        self.class_ids = self._resolve_classes(cfg.classes)
        self.backend = cfg.backend
        if self.backend == "auto":
            self.backend = "torch" if self.device.startswith("cuda") else "openvino"
        if self.backend != "torch":
            model = self._exported(model)
        self.model = model
        self(_warmup_frames(cfg.batch_size))  # ultralytics builds its backend lazily: do it at load, not per video

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

    def _exported(self, model: Any) -> Any:
        """Export the same weights with ultralytics' exporter (fp32, dynamic batch) once per
        model hash, format and imgsz, into a cache folder, and load that. Concurrent actors on
        one machine race safely: each exports into its own folder and the first rename wins."""
        import shutil
        import tempfile

        from ultralytics import YOLO

        if self.device != "cpu":
            raise ModelError(f"detector.backend={self.backend!r} runs on CPU; use 'torch' on CUDA")
        fmt = self.backend if self.backend == "openvino" else "onnx"
        cache = Path(os.environ.get("VIDTRACK_CACHE", Path.home() / ".cache" / "vidtrack"))
        out = cache / f"{(self.model_sha256 or 'unhashed')[:16]}-{fmt}-{self.cfg.imgsz}"
        if not out.exists():
            out.parent.mkdir(parents=True, exist_ok=True)
            work = Path(tempfile.mkdtemp(prefix=out.name + ".", dir=out.parent))
            try:
                shutil.copyfile(self.model_path, work / "model.pt")  # the exporter writes beside its input
                extra = {"simplify": False} if fmt == "onnx" else {}  # onnxslim is not a dependency
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", FutureWarning)  # torch.jit.trace deprecation, from the exporter
                    exported = YOLO(str(work / "model.pt"), task="detect").export(
                        format=fmt, imgsz=self.cfg.imgsz, dynamic=True, half=False, verbose=False, **extra)
                (work / "model.pt").unlink()
                (work / "EXPORTED").write_text(str(Path(exported).name))
                try:
                    work.rename(out)
                except OSError:  # another process finished first; use theirs
                    log.debug("export of %s already cached at %s", self.model_path, out)
            except Exception as e:
                raise ModelError(f"could not export {self.cfg.model!r} to {fmt} "
                                 f"({e.__class__.__name__}: {e}); use --set detector.backend=torch") from e
            finally:
                shutil.rmtree(work, ignore_errors=True)
        return YOLO(str(out / (out / "EXPORTED").read_text()), task="detect")

    def __call__(self, frames: list[np.ndarray]) -> list[Detections]:
        if not frames:
            return []
        results = self.model.predict(frames, imgsz=self.cfg.imgsz, conf=self.cfg.conf, iou=self.cfg.iou,
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
