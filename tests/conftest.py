"""Shared fixtures: real data from ../shared, real models, videos made at test time, a
local Ray, a multi-node Ray cluster on this machine, a standalone S3 server (moto).

Markers are applied here from the fixtures a test uses (see `pytest_collection_modifyitems`):
`ray` (a Ray fixture), `s3` (the moto server), `slow` (Ray jobs, which run the real detector
over many clips, or an explicit mark). `pytest -m "not slow"` is the fast inner loop.
Tests whose data is missing from ../shared skip, naming what is missing; set
VIDTRACK_REQUIRE_SHARED=1 to make that an error instead (CI).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

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
REID_MODELS = SHARED / "models" / "reid"  # the default embedder.reid_model is found here by name
os.environ.setdefault("VIDTRACK_MODELS", str(REID_MODELS))
VIDEOS = SHARED / "data" / "videos"

# fixture -> markers given to every test that uses it (directly or through other fixtures)
MARKERS_BY_FIXTURE = {
    "ray_local": ("ray", "slow"),
    "cluster": ("ray", "slow"),
    "s3": ("s3",),
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        for fixture in getattr(item, "fixturenames", ()):
            for marker in MARKERS_BY_FIXTURE.get(fixture, ()):
                item.add_marker(marker)


_Dst = TypeVar("_Dst", Path, BinaryIO)


def need_shared(*paths: Path) -> None:
    """Skip the calling test (or fixture) when shared test data is missing, naming it."""
    missing = [str(p) for p in paths if not p.exists()]
    if not missing:
        return
    reason = f"shared test data not found: {', '.join(missing)} (set VIDTRACK_SHARED to the shared/ folder)"
    if os.environ.get("VIDTRACK_REQUIRE_SHARED", "") not in ("", "0"):
        pytest.fail(reason)
    pytest.skip(reason)


def write_video(path: _Dst, frames: Iterator[np.ndarray] | list[np.ndarray], fps: float = 25.0,
                codec: str = "libx264", pix_fmt: str = "yuv420p", container_format: str | None = None,
                rotation: int | None = None, pts: list[int] | None = None,
                time_base: Fraction | None = None, options: dict[str, str] | None = None,
                gop: int | None = None) -> _Dst:
    """Encode BGR frames with PyAV (real codecs) to a file, or on at the end of an open binary file
    (one segment after another). `pts`/`time_base` give explicit timing; `gop`, frames between
    keyframes. Returns `path`."""
    frames = list(frames)
    h, w = frames[0].shape[:2]
    with av.open(path if not isinstance(path, Path) else str(path), "w", format=container_format,
                 options=options or {}) as c:
        s = c.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        s.width, s.height, s.pix_fmt = w, h, pix_fmt
        if gop is not None:
            s.gop_size = gop
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


def read_frames(src: Path, n: int, start: int = 0) -> list[np.ndarray]:
    """Frames start..start+n-1 of a real video, decoded to BGR (fewer if it is shorter)."""
    need_shared(src)
    frames = []
    with av.open(str(src)) as c:
        for i, f in enumerate(c.decode(video=0)):
            if i < start:
                continue
            frames.append(f.to_ndarray(format="bgr24"))
            if len(frames) == n:
                break
    return frames


def read_images(folder: Path, n: int | None = None) -> list[np.ndarray]:
    need_shared(folder)
    files = sorted(folder.glob("*.jpg"))[:n]
    return [cv2.imread(str(p)) for p in files]


def cut_video(src: Path, dst: Path, n: int, start: int = 0) -> Path:
    """n frames of a real video from frame `start`, re-encoded as H.264 at its own rate."""
    need_shared(src)
    with av.open(str(src)) as c:
        fps = float(c.streams.video[0].average_rate or 25)
    return write_video(dst, read_frames(src, n, start), fps=fps)


@pytest.fixture(scope="session")
def tud_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """TUD-Campus (71 frames, 640x480, 25 fps) encoded as H.264 at test time."""
    need_shared(TUD)
    return write_video(tmp_path_factory.mktemp("tud") / "TUD-Campus.mp4", read_images(TUD / "img1"), fps=25)


@pytest.fixture(scope="session")
def short_clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    need_shared(VIDEOS)
    d = tmp_path_factory.mktemp("clips")
    return {p.stem: cut_video(p, d / p.name, 20) for p in sorted(VIDEOS.glob("*.mp4"))}


@pytest.fixture(scope="session")
def fast_cfg():  # type: ignore[no-untyped-def]
    from jobs.config import load_config

    need_shared(MODEL)
    return load_config(None, [f"detector.model={MODEL}", "detector.imgsz=320"])


@pytest.fixture(scope="session")
def fast_models(fast_cfg):  # type: ignore[no-untyped-def]
    from tracking.pipeline import Models

    return Models.load(fast_cfg)


def make_archive_clips(folder: Path, count: int, frames: int) -> list[Path]:
    """`count` short real clips: TUD-Campus windows and windows of the shared street videos."""
    need_shared(TUD, VIDEOS, MODEL)
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


def job_spec(inp: str | Path, out: str | Path, *overrides: str, **fields: Any) -> Any:
    """A `jobs.run.JobSpec` for a test run: JOB_OVERRIDES then `overrides` as the parameters, no
    progress bar, and `fields` (any other JobSpec field: actors=1, endpoint_url=...)."""
    from jobs.config import load_config
    from jobs.run import JobSpec

    return JobSpec(input=str(inp), output=str(out), config=load_config(None, [*JOB_OVERRIDES, *overrides]),
                   **{"progress": False, **fields})


def fresh_python(code: str, env: dict[str, str] | None = None,
                 timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run `code` in a fresh interpreter from the repository root (nothing this test session
    has imported is loaded there); `env`: its whole environment (default: this one's)."""
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)


def loaded_after(code: str, packages: tuple[str, ...], env: dict[str, str] | None = None) -> tuple[list[str], str]:
    """Which of `packages` (each a package or module, with its submodules) a fresh interpreter
    has imported after running `code`, and what `code` printed. A failing `code` fails the test."""
    probe = (f"{code}\nimport json, sys\n"
             f"print('LOADED', json.dumps(sorted({{p for p in {packages!r} for m in sys.modules "
             f"if m == p or m.startswith(p + '.')}})))")
    r = fresh_python(probe, env)
    assert r.returncode == 0, r.stderr
    printed, _, loaded = r.stdout.rpartition("LOADED ")
    return json.loads(loaded), printed


@pytest.fixture
def shared_videos() -> Path:
    """The shared street videos folder (skips when it is missing)."""
    need_shared(VIDEOS)
    return VIDEOS


@pytest.fixture(scope="module")
def ray_local() -> Iterator[None]:
    """A local Ray (2 CPUs) for the module, shut down after it. Ray's workers inherit the
    environment at start: a module that needs more in it (S3 credentials) overrides this
    fixture, requesting those fixtures first and then this one."""
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield
    ray.shutdown()


@pytest.fixture
def cluster() -> Iterator[tuple[Any, list[Any]]]:
    """A multi-node Ray on this machine (ray.cluster_utils.Cluster): a head with no CPUs
    and two 1-CPU worker nodes, so every actor lives on a worker node. Yields the cluster
    and its worker nodes (for `remove_node`); Ray is connected to it."""
    import ray
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    try:
        workers = [c.add_node(num_cpus=1) for _ in range(2)]
        c.wait_for_nodes()
        ray.init(address=c.address, logging_level="WARNING")
        yield c, workers
    finally:
        ray.shutdown()
        c.shutdown()


# the S3 secret key in tests: it must never appear in any log or output
S3_CANARY = "CANARY-" + hashlib.sha256(b"vidtrack-secret").hexdigest()[:20]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto's standalone S3 server as a separate process on loopback, for the module;
    yields its endpoint URL. Credentials (with a canary secret, `S3_CANARY`) are only in
    the environment, where boto3's default chain finds them; restored after."""
    port = _free_port()
    log = (tmp_path_factory.mktemp("moto") / "moto.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})  # its log: a line per request, at once
    keys = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.update(AWS_ACCESS_KEY_ID="AKIAVIDTRACKTEST", AWS_SECRET_ACCESS_KEY=S3_CANARY,
                      AWS_DEFAULT_REGION="us-east-1")
    try:
        _wait_for_port(port, proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"moto server exited with {proc.returncode} before listening on port {port}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"moto server did not listen on port {port} within {timeout:.0f} s")
