"""CPU inference plumbing shared by the detector and the embedder: the export cache, thread
counts, OpenVINO / ONNX Runtime sessions and int8 post-training quantisation.

Nothing here imports torch or ultralytics: with a warm cache, a process runs both models from
their ONNX files without loading either (that is most of `vidtrack track`'s start-up).

- Precision is explicit, and gives the same result on every x86-64 CPU. OpenVINO is always
  compiled with `INFERENCE_PRECISION_HINT=f32`, so a model gives the same output on a CPU with
  bf16 as on one without (OpenVINO's own default is bf16 where the CPU has it, which would make a
  dataset depend on the node that made it). int8 (`precision = "int8"`) quantises weights to 7
  bits (`reduce_range`): CPUs without VNNI (AVX2, AVX-512 before Cascade Lake) multiply u8 x s8
  pairs into saturating int16 sums (VPMADDUBSW), which 8-bit weights overflow and 7-bit weights
  cannot, so VNNI and non-VNNI CPUs compute the same integers (tests/test_embedder.py checks it
  with oneDNN capped at AVX2).
- Threads follow the process's CPU share: what the actor set with `set_inference_threads` (from
  `--cpus-per-actor`), else `OMP_NUM_THREADS` (Ray sets it to an actor's `num_cpus`), else the
  CPUs this process may run on. OpenVINO pins its threads to cores only in a process that uses
  every CPU it may run on: pinned, several actors on one node all ran on the same first cores.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("vidtrack." + __name__)

CPU_BACKENDS = ("openvino", "onnxruntime")
RunFn = Callable[[np.ndarray], np.ndarray]


def cache_root() -> Path:
    """Exported and quantised models: `$VIDTRACK_CACHE`, default ~/.cache/vidtrack."""
    return Path(os.environ.get("VIDTRACK_CACHE", Path.home() / ".cache" / "vidtrack"))


_threads: int | None = None


def set_inference_threads(n: int) -> None:
    """Hold every model loaded from now on in this process to `n` threads (torch too, if loaded)."""
    global _threads
    if n < 1:
        raise ValueError(f"inference threads must be >= 1, got {n}")
    _threads = n
    torch = sys.modules.get("torch")  # not imported for it: importing torch costs seconds
    if torch is not None:
        torch.set_num_threads(n)


def inference_threads() -> int:
    """Threads one inference call may use: the actor's CPU share, not the whole machine."""
    if _threads is not None:
        return _threads
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    return usable_cpus()


def usable_cpus() -> int:
    """The CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def import_ultralytics() -> Any:
    """The ultralytics package, without its import-time side effect: it sets OMP_NUM_THREADS=1
    when unset ("for training"), which would hold every model loaded later in the process (and
    torch) to one thread."""
    before = os.environ.get("OMP_NUM_THREADS")
    import ultralytics

    if before is None:
        os.environ.pop("OMP_NUM_THREADS", None)
    return ultralytics


def cuda_present() -> bool:
    """Whether torch can see a CUDA device, without importing torch on machines with no NVIDIA driver."""
    if "torch" not in sys.modules and not any(
            Path(p).exists() for p in ("/dev/nvidiactl", "/proc/driver/nvidia/version")):
        return False
    import torch

    return bool(torch.cuda.is_available())


def cached_file(name: str, build: Callable[[Path], None]) -> Path:
    """`cache_root()/name`, built once by `build(tmp_path)` and renamed into place, so that
    concurrent processes never read a half-written file (the first rename wins)."""
    out = cache_root() / name
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_s = tempfile.mkstemp(prefix=out.name + ".", suffix=".partial", dir=out.parent)
    os.close(fd)
    tmp = Path(tmp_s)
    try:
        build(tmp)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


@dataclass(frozen=True)
class ImageInput:
    """The model's input is an image batch normalised as (x - mean) / std per channel, with x
    in 0-255: the session takes (n, h, w, 3) uint8 and does the normalisation (and the NHWC to
    NCHW transpose) itself. In OpenVINO that is part of the compiled graph, which costs far less
    than NumPy's passes over float copies (a 224x224 crop: 1.8 ms in NumPy, 27% of its cost)."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def normalise(self, x: np.ndarray) -> np.ndarray:
        """(n, h, w, 3) uint8 -> (n, 3, h, w) float32, as the compiled OpenVINO graph does it."""
        arr = (x.astype(np.float32) - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return np.ascontiguousarray(arr.transpose(0, 3, 1, 2))


def cpu_session(onnx_path: Path, backend: str, threads: int | None = None, image: ImageInput | None = None) -> RunFn:
    """A callable running the ONNX model (or, on OpenVINO, an IR `.xml`) on CPU for any batch
    size: input array -> first output, in fp32 (or int8 where the model carries quantize/dequantize
    pairs). With `image`, the input is uint8 NHWC and the session normalises it (see `ImageInput`)."""
    threads = threads or inference_threads()
    if backend == "openvino":
        return _openvino(onnx_path, threads, image)
    if backend == "onnxruntime":
        run = _onnxruntime(onnx_path, threads)
        return run if image is None else (lambda x: run(image.normalise(x)))
    raise ValueError(f"{onnx_path}: no CPU backend {backend!r}; expected one of {CPU_BACKENDS}")


def openvino_properties(threads: int) -> dict[str, Any]:
    """How every model is compiled for OpenVINO's CPU plugin: latency mode on `threads` threads,
    fp32 whatever the CPU. OpenVINO pins its threads to cores, the same first cores in every
    process: two 1-thread actors on a 2-core node both ran on core 0, each at half speed (53
    against 25 ms a frame). So only a process that uses every CPU it may run on is pinned;
    otherwise the OS spreads the processes' threads over the cores."""
    return {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32",
            "ENABLE_CPU_PINNING": threads >= usable_cpus()}


def _openvino(onnx_path: Path, threads: int, image: ImageInput | None) -> RunFn:
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(onnx_path))  # an ONNX file or an OpenVINO IR (.xml)
    batch = model.input(0).get_partial_shape()
    if batch.rank.is_static and batch[0].is_static:  # e.g. an IR exported for batch 1: any batch size
        batch[0] = ov.Dimension()
        model.reshape({model.input(0): batch})
    if image is not None:
        from openvino.preprocess import PrePostProcessor

        ppp = PrePostProcessor(model)
        ppp.input().tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC"))
        ppp.input().model().set_layout(ov.Layout("NCHW"))
        ppp.input().preprocess().convert_element_type(ov.Type.f32).mean(list(image.mean)).scale(list(image.std))
        model = ppp.build()
    blobs = cache_root() / "openvino-blobs"  # compiled kernels, keyed by OpenVINO itself
    blobs.mkdir(parents=True, exist_ok=True)
    core.set_property({"CACHE_DIR": str(blobs)})
    # OpenVINO's blob cache is not safe for two processes compiling the same model at once (two
    # actors starting on a fresh node: "cannot set permissions ... .blob"): compile one at a time;
    # the second then loads the first one's blob.
    with open(blobs / ".compile.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        compiled = core.compile_model(model, "CPU", openvino_properties(threads))
    request = compiled.create_infer_request()

    def run(x: np.ndarray) -> np.ndarray:
        return np.array(request.infer([x])[0])  # copied: the request reuses its output buffer
    return run


def _onnxruntime(onnx_path: Path, threads: int) -> RunFn:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: np.asarray(session.run(None, {name: x})[0])


def quantize_int8(src: Path, dst: Path, input_name: str, samples: Iterator[np.ndarray],
                  exclude: tuple[str, ...] = ()) -> None:
    """Static post-training int8 quantisation (ONNX Runtime's tool, offline): weights per
    channel in 7 bits (`reduce_range`: no int16 saturation on CPUs without VNNI, see the module
    docstring), activations calibrated on `samples`; convolutions only, minus `exclude` (node
    names). The result is a QDQ ONNX model that OpenVINO and ONNX Runtime run in int8. Its
    recipe is `tracking.config.INT8_RECIPE`, part of cache names and of identities."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class _Reader(CalibrationDataReader):
        def get_next(self) -> dict[str, np.ndarray] | None:
            x = next(samples, None)
            return None if x is None else {input_name: x}

    root = logging.getLogger()
    advice = _DropMessages("pre-process")  # onnxruntime's advice to run its shape pre-processing first
    root.addFilter(advice)
    try:
        with tempfile.TemporaryDirectory(prefix="vidtrack-quant-") as tmp:
            shutil.copyfile(src, Path(tmp) / "model.onnx")
            quantize_static(str(Path(tmp) / "model.onnx"), str(dst), _Reader(), quant_format=QuantFormat.QDQ,
                            per_channel=True, reduce_range=True, activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QInt8,
                            op_types_to_quantize=["Conv"], nodes_to_exclude=list(exclude))
    finally:
        root.removeFilter(advice)


class _DropMessages(logging.Filter):
    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


def calibration_images() -> list[np.ndarray]:
    """BGR images for int8 calibration that ship with an installed package (ultralytics'
    bus.jpg and zidane.jpg: street scenes with people), so quantising needs no download and
    gives the same model on every machine."""
    import importlib.util

    import cv2

    spec = importlib.util.find_spec("ultralytics")  # located, not imported (see import_ultralytics)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("calibration images: the ultralytics package is not installed")
    images = []
    for name in ("bus.jpg", "zidane.jpg"):
        path = Path(next(iter(spec.submodule_search_locations))) / "assets" / name
        img = cv2.imread(str(path))
        if img is None:
            raise FileNotFoundError(f"calibration image {path} is missing or unreadable")
        images.append(img)
    return images


def cpu_description() -> dict[str, Any]:
    """The CPU's model name and the ISA features that decide CPU inference speed."""
    flags: set[str] = set()
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and not model:
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError as e:
        log.warning("cannot read /proc/cpuinfo: %s", e)
    isa = {"avx2": "avx2" in flags, "avx512": "avx512f" in flags, "vnni": bool(flags & {"avx512_vnni", "avx_vnni"}),
           "bf16": "avx512_bf16" in flags or "amx_bf16" in flags, "amx": bool(flags & {"amx_int8", "amx_tile"})}
    return {"model": model or "unknown", "cores": inference_threads(), **isa}
