"""How well each appearance option tells people apart, without a tracker: `vidtrack-bench --reid`.

Every visible ground-truth person box of every shared MOTChallenge sequence is cropped and embedded;
cosine distances of "same identity, another frame" pairs are ranked against "another identity"
pairs (ROC AUC: 1.0 separates them perfectly, 0.5 is chance). Tracking scores on 8 identities
(TUD-Campus) move several points with one switch; this ranks the features themselves, over every
identity of every sequence. Also printed: the share of each kind of pair within the tracker's
default appearance gate.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from scipy.stats import rankdata

from tracking.appearance import ClassAppearance
from tracking.config import EmbedderConfig, TrackerConfig
from tracking.detections import Detections
from tracking.embedder import AppearanceEmbedder
from tracking.mot import MotSequence

Option = tuple[tuple[int, int], str] | str  # (crop size, precision) of MobileNetV2, or a re-ID network


class ReidCrops:
    """A person re-identification network with the general embedder's `crops` / `embed_crops`."""

    def __init__(self, spec: str) -> None:
        self.app = ClassAppearance(EmbedderConfig(reid_model=spec), names={0: "person"}, kept_class_ids=[0])

    def crops(self, img: np.ndarray, dets: Detections) -> list[np.ndarray]:
        return self.app.reid_crops(img, dets)

    def embed_crops(self, crops: list[np.ndarray]) -> np.ndarray:
        return self.app.embed_reid(crops)


def embedder_for(option: Option) -> tuple[str, AppearanceEmbedder | ReidCrops]:
    """The option's name as the bench prints it, and its embedder."""
    if isinstance(option, str):
        return Path(option).stem, ReidCrops(option)
    size, precision = option
    return f"{size[0]}x{size[1]} {precision}", AppearanceEmbedder(EmbedderConfig(crop_size=size, precision=precision))


@dataclass
class _Boxes:
    name: str
    frames: dict[int, np.ndarray]  # frame number -> BGR image
    gt: np.ndarray  # frame, id, left, top, width, height (pixels, 1-based as MOTChallenge writes them)


def _visible_people(seq: MotSequence) -> _Boxes:
    """Ground truth boxes that are scored (MOT17: pedestrians at least half visible)."""
    gt = np.loadtxt(seq.root / "gt" / "gt.txt", delimiter=",", ndmin=2)
    gt = gt[gt[:, 6] != 0]
    if seq.benchmark == "MOT17":
        gt = gt[(gt[:, 7] == 1) & (gt[:, 8] >= 0.5)]
    if not seq.source.is_dir():
        raise ValueError(f"{seq.root}: --reid reads the sequence's images (img1/)")
    frames = {}
    for f in np.unique(gt[:, 0]).astype(int):
        img = cv2.imread(str(next(seq.source.glob(f"{f:06d}.*"))))
        if img is None:
            raise ValueError(f"{seq.source}: frame {f} is missing or unreadable")
        frames[f] = img
    return _Boxes(seq.name, frames, gt[:, :6])


def roc_auc(same: np.ndarray, other: np.ndarray) -> float:
    """P(a same-identity distance < an other-identity distance), ties counted half."""
    ranks = rankdata(np.concatenate([same, other]))
    below = ranks[len(same):].sum() - len(other) * (len(other) + 1) / 2  # other-pairs ranked above same-pairs
    return float(below / (len(same) * len(other)))


def _pair_distances(emb: AppearanceEmbedder | ReidCrops, seq: _Boxes) -> tuple[np.ndarray, np.ndarray, float, int]:
    feats, ids, frames, seconds = [], [], [], 0.0
    for f, img in seq.frames.items():
        g = seq.gt[seq.gt[:, 0] == f]
        x1, y1 = g[:, 2] - 1, g[:, 3] - 1
        boxes = np.column_stack([x1, y1, x1 + g[:, 4], y1 + g[:, 5]])
        dets = Detections.from_arrays(boxes, np.ones(len(g)), np.zeros(len(g), np.int64))
        c = dets.clipped_crop_boxes(img.shape[1], img.shape[0])
        keep = (c[:, 2] > c[:, 0]) & (c[:, 3] > c[:, 1])  # as Detections.usable: a crop that is not empty
        crops = emb.crops(img, dets[keep])
        t0 = time.perf_counter()
        feats.append(emb.embed_crops(crops))
        seconds += time.perf_counter() - t0
        ids.append(g[keep, 1])
        frames.append(np.full(len(crops), f))
    x = np.concatenate(feats)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    ident, frame = np.concatenate(ids), np.concatenate(frames)
    i, j = np.triu_indices(len(x), 1)
    dist = 1.0 - np.einsum("ij,ij->i", x[i], x[j])
    same = ident[i] == ident[j]
    return dist[same & (frame[i] != frame[j])], dist[~same], seconds, len(x)


def reid(sequences: list[Path], options: list[Option]) -> int:
    data = [_visible_people(MotSequence.open(s)) for s in sequences]
    gate = TrackerConfig().max_cosine_distance
    print(f"reid: {sum(len(d.gt) for d in data)} ground-truth boxes, "
          f"{sum(len(np.unique(d.gt[:, 1])) for d in data)} identities in {len(data)} sequences", flush=True)
    for option in options:
        name, emb = embedder_for(option)
        per_seq, all_same, all_other, seconds, crops = [], [], [], 0.0, 0
        for d in data:
            same, other, s, n = _pair_distances(emb, d)
            seconds, crops = seconds + s, crops + n
            all_same.append(same)
            all_other.append(other)
            per_seq.append(f"{d.name} {roc_auc(same, other):.3f}" if len(same) and len(other) else f"{d.name} -")
        same, other = np.concatenate(all_same), np.concatenate(all_other)
        print(f"reid: {name}: {1000 * seconds / crops:.2f} ms/crop, "
              f"AUC {roc_auc(same, other):.3f} (same identity within gate {gate}: {np.mean(same < gate):.3f}, "
              f"other identity: {np.mean(other < gate):.4f}); " + ", ".join(per_seq), flush=True)
    return 0
