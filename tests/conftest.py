"""Shared fixtures: real data from ../shared, real models, videos made at test time."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

os.environ.setdefault("YOLO_OFFLINE", "1")  # never reach for the network in tests
os.environ.setdefault("YOLO_AUTOINSTALL", "false")
# detector exports (OpenVINO/ONNX) are cached per test session; Ray workers inherit this
os.environ.setdefault("VIDTRACK_CACHE", tempfile.mkdtemp(prefix="vidtrack-test-cache-"))

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("VIDTRACK_SHARED", REPO.parent / "shared")).resolve()
MODEL = SHARED / "models" / "yolov8n.pt"
TUD = SHARED / "data" / "mot" / "TUD-Campus"
VIDEOS = SHARED / "data" / "videos"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not MODEL.exists():
        raise pytest.UsageError(f"test data not found: {MODEL} (set VIDTRACK_SHARED to the shared/ folder)")


def write_video(path: Path, frames: Iterator[np.ndarray] | list[np.ndarray], fps: float = 25.0,
                codec: str = "libx264", pix_fmt: str = "yuv420p", container_format: str | None = None,
                rotation: int | None = None, pts: list[int] | None = None,
                time_base: Fraction | None = None) -> Path:
    """Encode BGR frames with PyAV (real codecs). `pts`/`time_base` give explicit timing."""
    frames = list(frames)
    h, w = frames[0].shape[:2]
    with av.open(str(path), "w", format=container_format) as c:
        s = c.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        s.width, s.height, s.pix_fmt = w, h, pix_fmt
        if time_base is not None:
            s.codec_context.time_base = time_base
        if rotation is not None:
            s.set_display_rotation(rotation)
        for i, img in enumerate(frames):
            f = av.VideoFrame.from_ndarray(img, format="bgr24" if img.ndim == 3 else "gray")
            f.pts = pts[i] if pts else i
            if time_base is not None:
                f.time_base = time_base
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    return path


def read_images(folder: Path, n: int | None = None) -> list[np.ndarray]:
    files = sorted(folder.glob("*.jpg"))[:n]
    return [cv2.imread(str(p)) for p in files]


def cut_video(src: Path, dst: Path, n: int, start: int = 0) -> Path:
    """n frames of a real video from frame `start`, re-encoded as H.264 at its own rate."""
    with av.open(str(src)) as c:
        s = c.streams.video[0]
        fps = float(s.average_rate or 25)
        frames = []
        for i, f in enumerate(c.decode(s)):
            if i < start:
                continue
            frames.append(f.to_ndarray(format="bgr24"))
            if len(frames) == n:
                break
    return write_video(dst, frames, fps=fps)


@pytest.fixture(scope="session")
def tud_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """TUD-Campus (71 frames, 640x480, 25 fps) encoded as H.264 at test time."""
    return write_video(tmp_path_factory.mktemp("tud") / "TUD-Campus.mp4", read_images(TUD / "img1"), fps=25)


@pytest.fixture(scope="session")
def short_clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("clips")
    return {p.stem: cut_video(p, d / p.name, 20) for p in sorted(VIDEOS.glob("*.mp4"))}


@pytest.fixture(scope="session")
def fast_cfg():  # type: ignore[no-untyped-def]
    from jobs.config import load_config

    return load_config(None, [f"detector.model={MODEL}", "detector.imgsz=320"])


@pytest.fixture(scope="session")
def fast_models(fast_cfg):  # type: ignore[no-untyped-def]
    from tracking.pipeline import Models

    return Models.load(fast_cfg)


def make_archive_clips(folder: Path, count: int, frames: int) -> list[Path]:
    """`count` short real clips: TUD-Campus windows and windows of the shared street videos."""
    folder.mkdir(parents=True, exist_ok=True)
    tud = read_images(TUD / "img1")
    clips = []
    sources = [p for p in sorted(VIDEOS.glob("*.mp4"))]
    for i in range(count):
        dst = folder / f"clip{i:02d}.mp4"
        if i % 3 == 0:
            start = (i * 5) % (len(tud) - frames)
            clips.append(write_video(dst, tud[start:start + frames], fps=25))
        else:
            clips.append(cut_video(sources[i % 2], dst, frames, start=(i * 37) % 300))
    return clips


JOB_OVERRIDES = [f"detector.model={MODEL}", "detector.imgsz=320", "detector.classes=['person', 'car']"]
