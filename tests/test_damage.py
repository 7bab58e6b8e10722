"""Damage the decoder conceals (tracking/damage.py): noise inside a keyframe decodes to every
frame, patched; the video fails with `DamagedVideoError` naming the first damaged frame, and
nothing is published. Real files, real codecs, real noise."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from tests.conftest import VIDEOS, need_shared, write_video
from tracking.video import DamagedVideoError, IncompleteVideoError, VideoReader

CODECS = [("x264.mp4", "libx264", None), ("mpeg4.avi", "mpeg4", None), ("hevc.mp4", "libx265", None),
          ("x264.ts", "libx264", "mpegts")]


def _frames(n: int) -> list[np.ndarray]:
    """Real footage (the shared car clip's first frames), so the encoder spends real bits."""
    need_shared(VIDEOS)
    with av.open(str(VIDEOS / "car-detection.mp4")) as c:
        return [f.to_ndarray(format="bgr24") for _, f in zip(range(n), c.decode(video=0), strict=False)]


def _damage_keyframe(path: Path, size: int = 2048) -> tuple[Path, int]:
    """`size` bytes of noise a third of the way into the middle keyframe; returns the damaged
    copy and that keyframe's frame index (B-frames shown just before it reference it too)."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        packets = [(p.pos, p.size, p.pts) for p in c.demux(s) if p.size and p.is_keyframe and p.pos is not None]
        pts = sorted(p.pts for p in av.open(str(path)).demux(video=0) if p.size)
    pos, n, key_pts = packets[len(packets) // 2]
    data = bytearray(path.read_bytes())
    data[pos + n // 3:pos + n // 3 + size] = np.random.default_rng(0).integers(0, 256, size, np.uint8).tobytes()
    out = path.with_name("damaged-" + path.name)
    out.write_bytes(bytes(data))
    return out, pts.index(key_pts)


def _decode(path: Path) -> int:
    with VideoReader(path) as r:
        return sum(1 for _ in r)


@pytest.mark.parametrize(("name", "codec", "fmt"), CODECS)
def test_noise_in_a_keyframe_fails_naming_the_first_damaged_frame(tmp_path: Path, name: str, codec: str,
                                                                     fmt: str | None) -> None:
    clean = write_video(tmp_path / name, _frames(90), codec=codec, container_format=fmt, gop=30)
    assert _decode(clean) == 90  # no false alarm on the clean file
    damaged, first = _damage_keyframe(clean)
    with pytest.raises(DamagedVideoError, match=rf"damaged-{name}: frame (\d+) .*is damaged: the decoder "
                                                rf"concealed an error") as e:
        _decode(damaged)
    index = int(str(e.value).split("frame ")[1].split(" ")[0])
    assert first - 3 <= index <= first + 1, (index, first)  # the keyframe, or a B-frame shown before it


def test_the_shared_videos_have_no_damage() -> None:
    need_shared(VIDEOS)
    for video in sorted(VIDEOS.glob("*.mp4")):
        assert _decode(video) > 300


def test_two_ts_files_joined_byte_for_byte_decode_whole(tmp_path: Path) -> None:
    """Recorders concatenate MPEG-TS segments; the demuxer flags the packet at the join, which
    decodes cleanly: every frame of both segments, no error. The same file cut inside its last
    frame still fails (the decoder meets the cut). MPEG-TS declares no frame count: a file cut at a
    frame boundary looks like a shorter recording (README, "Operating it nightly")."""
    segment = write_video(tmp_path / "seg.ts", _frames(30), container_format="mpegts")
    joined = tmp_path / "joined.ts"
    joined.write_bytes(segment.read_bytes() * 2)
    assert _decode(joined) == 60
    cut = tmp_path / "cut.ts"
    cut.write_bytes(joined.read_bytes()[:-100])
    with pytest.raises((IncompleteVideoError, DamagedVideoError), match=r"cut\.ts"):
        _decode(cut)


def test_a_damaged_video_publishes_nothing(tmp_path: Path, fast_cfg, fast_models) -> None:  # type: ignore[no-untyped-def]
    from tracking.pipeline import VideoOutputs, process_video

    damaged, _ = _damage_keyframe(write_video(tmp_path / "v.mp4", _frames(90), gop=30))
    outputs = VideoOutputs.in_dir(tmp_path / "out", "v", annotated=True)
    with pytest.raises(DamagedVideoError):
        process_video(damaged, outputs, fast_cfg, fast_models)
    assert not [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
