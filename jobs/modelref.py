"""Resolve the detector model spec (an ultralytics name, a local path or an `s3://` URI) to
a local file and its SHA-256, for the driver (the model's identity goes into `params_id`)
and for actors (which load it). Imports no torch unless the spec is a bare model name."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from jobs.plan import local_name_for
from jobs.storage import UNKNOWN_SIZE, ObjectInfo, S3Storage, StorageError
from tracking.modelref import ModelError, check_local, file_sha256


@dataclass(frozen=True)
class ModelRef:
    spec: str  # what the user wrote
    local: str  # a local path, or the bare name when ultralytics must resolve it
    sha256: str  # of the model's bytes; the identity of the model


def fetch_model(spec: str, endpoint_url: str | None, cache_dir: Path, what: str = "detector model",
                local: Path | None = None) -> str:
    """Local path for a model file. `s3://` URIs are downloaded once into `cache_dir` under a
    name derived from a hash of the URI (or as `local`); others pass through."""
    if not spec.startswith("s3://"):
        return spec
    parent, _, name = spec.rpartition("/")
    if not name:
        raise ModelError(f"{what} {spec!r}: URI names no object")
    cache_dir.mkdir(parents=True, exist_ok=True)
    local = local or cache_dir / local_name_for(spec)
    if not local.exists():
        tmp = local.with_name(local.name + f".{os.getpid()}.partial")
        store = S3Storage(parent + "/", endpoint_url)
        try:
            store.download(ObjectInfo(name, UNKNOWN_SIZE, datetime.fromtimestamp(0, UTC)), tmp)
            os.replace(tmp, local)
        except StorageError as e:
            raise ModelError(f"{what} {spec!r} could not be downloaded ({e}). "
                             "Check the URI and that this job's role can read it.") from e
        finally:
            tmp.unlink(missing_ok=True)
    return str(local)


def resolve_model(spec: str, endpoint_url: str | None, cache_dir: Path) -> ModelRef:
    """The model's local file and SHA-256. A bare name is resolved by ultralytics (which
    downloads it when online, and fails with ModelError naming the fix when not)."""
    local = fetch_model(spec, endpoint_url, cache_dir)
    path = check_local(local)
    if path is None:
        from tracking.detector import load_yolo  # torch: only for bare model names

        ckpt = Path(str(getattr(load_yolo(local), "ckpt_path", "") or local))
        if not ckpt.is_file():
            raise ModelError(f"detector model {spec!r}: ultralytics resolved no local file to hash")
        path = ckpt
    return ModelRef(spec, str(path), file_sha256(path))


def fetch_reid_model(spec: str, endpoint_url: str | None, cache_dir: Path) -> str:
    """Local `.xml` for `embedder.reid_model`: an `s3://` URI of an OpenVINO IR's `.xml` is
    downloaded with the `.bin` beside it (same key, `.bin`), both under hashed names; "" and
    local paths or names pass through (tracking/reid.py checks and hashes them)."""
    if not spec.startswith("s3://"):
        return spec
    if not spec.endswith(".xml"):
        raise ModelError(f"embedder.reid_model {spec!r}: expected the s3:// URI of an OpenVINO IR .xml "
                         "(its .bin beside it under the same name)")
    xml = Path(fetch_model(spec, endpoint_url, cache_dir, "embedder.reid_model"))
    fetch_model(spec.removesuffix(".xml") + ".bin", endpoint_url, cache_dir, "embedder.reid_model weights",
                local=xml.with_suffix(".bin"))
    return str(xml)
