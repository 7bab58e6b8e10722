"""The environment is exactly what the project declares."""

from __future__ import annotations

import importlib.metadata as md
import os


def test_opencv_is_the_headless_build_only() -> None:
    import cv2

    installed = {d.metadata["Name"].lower() for d in md.distributions()}
    assert "opencv-python" not in installed, "opencv-python (GUI build) must not be installed beside the headless one"
    assert "opencv-python-headless" in installed
    gui = cv2.getBuildInformation().split("GUI:")[1].split("\n\n")[0]
    assert "QT" not in gui and "GTK+: YES" not in gui.replace(" ", "")


def test_deep_sort_realtime_needs_no_pkg_resources() -> None:
    import sys

    import tracking.embedder
    import tracking.tracker  # noqa: F401

    assert "deep_sort_realtime.embedder.embedder_pytorch" not in sys.modules


def test_ultralytics_never_autoinstalls() -> None:
    from ultralytics.utils import AUTOINSTALL

    import tracking.detector  # noqa: F401

    assert os.environ["YOLO_AUTOINSTALL"] == "false" and AUTOINSTALL is False
