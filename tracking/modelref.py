"""Model identity without the frameworks: the error a model that cannot be had raises, and a
model's identity (the SHA-256 of its bytes). Importing this module imports neither torch nor
ultralytics, so the Ray driver and `vidtrack --help` stay light. Fetching `s3://` models is
the job's (`jobs/modelref.py`); loading them is the detector's (`tracking/detector.py`)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


class ModelError(RuntimeError):
    """The detector model cannot be found, downloaded or loaded: the message names the model
    and the fix."""


def file_sha256(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fix_hint(spec: str) -> str:
    return ("Without internet, give a local file or an s3:// URI: "
            f"--set detector.model=/path/to/{Path(spec).name or 'yolov8n.pt'}")


def looks_like_path(spec: str) -> bool:
    """A local path rather than an ultralytics model name such as 'yolov8n.pt'."""
    return Path(spec).expanduser().is_absolute() or os.sep in spec or spec.startswith(".") or spec.startswith("~")


def check_local(spec: str) -> Path | None:
    """The local file a model spec names, checked; None for a model name (ultralytics resolves
    those, downloading when online). Raises ModelError for a path that is missing or empty."""
    path = Path(spec).expanduser()
    if not path.exists():
        if looks_like_path(spec):
            raise ModelError(f"detector model {spec!r}: no such file. {fix_hint(spec)}")
        return None
    if not path.is_file():
        raise ModelError(f"detector model {spec!r} is not a file. {fix_hint(spec)}")
    if path.stat().st_size == 0:
        raise ModelError(f"detector model {spec!r}: file is empty. {fix_hint(spec)}")
    return path
