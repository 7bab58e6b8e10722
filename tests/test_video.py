from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import write_video
from tracking.video import VideoReader, VideoSink, probe


def _frames(n: int, w: int = 64, h: int = 48) -> list[np.ndarray]:
    out = []
    for i in range(n):
        img = np.zeros((h, w, 3), np.uint8)
        img[:, : (i * 5) % w] = 180
        img[:8, :8] = (0, 0, 255)  # a red mark in the top-left corner
        out.append(img)
    return out


def test_real_video_info_and_timestamps(shared_videos: Path) -> None:
    with VideoReader(shared_videos / "car-detection.mp4") as r:
        assert (r.info.width, r.info.height, r.info.fps, r.info.codec) == (768, 432, 12.5, "h264")
        ts = [f.timestamp_s for f, _ in zip(r, range(5), strict=False)]
    assert ts == pytest.approx([0.0, 0.08, 0.16, 0.24, 0.32])


def test_timestamps_come_from_pts_not_index(tmp_path: Path) -> None:
    pts = [0, 33, 100, 120, 400]  # milliseconds, irregular (variable frame rate)
    p = write_video(tmp_path / "vfr.mkv", _frames(5), fps=25, codec="mpeg4", time_base=Fraction(1, 1000), pts=pts)
    with VideoReader(p) as r:
        frames = list(r)
    assert [f.timestamp_s for f in frames] == pytest.approx([0.0, 0.033, 0.1, 0.12, 0.4])
    assert [f.index for f in frames] == [0, 1, 2, 3, 4]


def test_frame_count_is_counted_not_trusted(tmp_path: Path) -> None:
    """Frames are counted as they decode: a Matroska file declares no frame count (0), and all 7
    of its frames still come out."""
    p = write_video(tmp_path / "a.mkv", _frames(7), container_format="matroska")
    with VideoReader(p) as r:
        assert r.info.frame_count == 0
        assert sum(1 for _ in r) == 7


def test_rotation_applied(tmp_path: Path) -> None:
    p = write_video(tmp_path / "rot.mp4", _frames(3), rotation=90)
    with VideoReader(p) as r:
        assert r.info.rotation == 90 and (r.info.width, r.info.height) == (48, 64)
        f = next(iter(r))
    assert f.bgr.shape == (64, 48, 3)
    # rotated 90 degrees counter-clockwise: the top-left red mark moves to the bottom-left
    assert f.bgr[-4, 4, 2] > 150 and f.bgr[4, 4, 2] < 100


def test_sink_writes_browser_playable_h264(tmp_path: Path) -> None:
    out = tmp_path / "o.mp4"
    with VideoSink(out, 65, 49, 12.5) as sink:  # odd size: padded to even for yuv420p
        for img in _frames(10, 65, 49):
            sink.write(img)
    info = probe(out)
    assert info == {"codec": "h264", "pix_fmt": "yuv420p", "width": 66, "height": 50, "fps": 12.5,
                    "frames": 10, "faststart": True}
    assert not list(tmp_path.glob(".*partial"))


def test_sink_leaves_nothing_on_error(tmp_path: Path) -> None:
    out = tmp_path / "o.mp4"
    with pytest.raises(RuntimeError), VideoSink(out, 64, 48, 25) as sink:
        sink.write(_frames(1)[0])
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
