"""Person re-identification network: an OpenVINO IR trained to tell people apart (Intel Open
Model Zoo's person-reidentification-retail-0288 / -0287: 256x128 BGR crops in 0-255, the mean
and scale inside the graph, a 256-d embedding compared by cosine).

A model spec is a local `.xml` path (its `.bin` beside it), an `s3://` URI of the `.xml`
(fetched with its `.bin` by the job, `jobs/modelref.py`), or a bare name looked up as
`<name>.xml` under `$VIDTRACK_MODELS` (default `$VIDTRACK_CACHE/models`). No hub serves these
files: a name that is not there is a `ModelError` naming the fix. The network's identity is the
SHA-256 of both files. It always runs on the CPU through OpenVINO (it is small: about 2 ms per
crop on 2 cores), also in a CUDA actor, where the GPU keeps the detector; no torch import.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from tracking.inference import ImageInput, cache_root, cpu_session
from tracking.modelref import ModelError, file_sha256, looks_like_path

BUILTIN = "mobilenetv2"  # the general embedder (tracking/embedder.py), not a re-identification IR
RAW_BGR = ImageInput(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))  # the IR normalises inside its graph


def models_root() -> Path:
    """Where bare re-identification model names are looked up."""
    return Path(os.environ.get("VIDTRACK_MODELS", cache_root() / "models"))


def _hint(spec: str) -> str:
    name = Path(spec).name.removesuffix(".xml") or "person-reidentification-retail-0288"
    return (f"No hub serves it offline: give a local OpenVINO IR or an s3:// URI, e.g. --set "
            f"embedder.reid_model=/path/to/{name}.xml (its .bin beside it), or put {name}.xml and "
            f"{name}.bin under {models_root()}")


def ir_files(spec: str) -> tuple[Path, Path]:
    """The IR's `.xml` and `.bin` for a local path or a bare name, checked (ModelError names them)."""
    path = Path(spec).expanduser()
    if not looks_like_path(spec) and not path.is_file():
        path = models_root() / f"{spec.removesuffix('.xml')}.xml"
    if path.suffix != ".xml":
        raise ModelError(f"embedder.reid_model {spec!r}: expected an OpenVINO IR .xml file. {_hint(spec)}")
    weights = path.with_suffix(".bin")
    for p in (path, weights):
        if not p.is_file() or p.stat().st_size == 0:
            raise ModelError(f"embedder.reid_model {spec!r}: {p} is missing or empty. {_hint(spec)}")
    return path, weights


def reid_sha256(spec: str) -> str:
    """The network's identity: SHA-256 over both files' SHA-256s (graph and weights)."""
    xml, weights = ir_files(spec)
    return hashlib.sha256(f"{file_sha256(xml)}:{file_sha256(weights)}".encode()).hexdigest()


class ReidNetwork:
    """The IR compiled for the CPU with a dynamic batch: (n, h, w, 3) uint8 BGR crops ->
    (n, dim) float32 embeddings."""

    def __init__(self, spec: str) -> None:
        import openvino as ov

        xml, _ = ir_files(spec)
        model = ov.Core().read_model(str(xml))
        shape = model.input(0).get_partial_shape()
        if shape.rank.get_length() != 4 or int(shape[1].get_length()) != 3:
            raise ModelError(f"embedder.reid_model {spec!r}: input {shape} is not a (n, 3, h, w) image batch")
        self.crop_hw = (int(shape[2].get_length()), int(shape[3].get_length()))
        self.dim = int(model.output(0).get_partial_shape()[-1].get_length())
        self.run = cpu_session(xml, "openvino", image=RAW_BGR)

    def __call__(self, crops: np.ndarray) -> np.ndarray:
        return self.run(crops)
