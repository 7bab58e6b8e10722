"""End to end on real footage with the real YOLOv8n, DeepSORT and codecs."""

from __future__ import annotations

import json
import shutil
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from tests.conftest import TUD, cut_video, write_video
from tracking.pipeline import VideoOutputs, process_video
from tracking.records import TRACK_SCHEMA
from tracking.video import VideoError, probe


@pytest.mark.slow  # the real detector over a whole sequence
def test_tud_campus_video_end_to_end(tud_video: Path, fast_cfg, fast_models, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = VideoOutputs.in_dir(tmp_path, "tud")
    s = process_video(tud_video, out, fast_cfg, fast_models, video_id="tud", params_id="p123")
    t = pq.read_table(out.tracks)
    assert t.schema.equals(TRACK_SCHEMA)
    assert s.frames == 71 and s.rows == t.num_rows > 200  # ~7 people per frame
    assert pc.min(t["track_id"]).as_py() == 1
    assert set(t["video_id"].to_pylist()) == {"tud"} and set(t["params_id"].to_pylist()) == {"p123"}
    assert "person" in set(t["class_name"].to_pylist())
    frames = t["frame_index"].to_numpy()
    assert frames.min() >= 0 and frames.max() <= 70 and np.all(np.diff(frames) >= 0)
    ts = t["timestamp_s"].to_numpy()
    assert np.allclose(ts, frames / 25.0, atol=1e-6)  # 25 fps, from the container's PTS
    matched = t.filter(pc.field("matched"))
    assert matched.num_rows > 0.5 * t.num_rows  # at imgsz=320 about 70% are matched
    assert pc.all(pc.is_valid(matched["confidence"])).as_py()
    assert pc.all(pc.is_null(t.filter(~pc.field("matched"))["confidence"])).as_py()
    x1, x2 = t["x1"].to_numpy(), t["x2"].to_numpy()
    assert np.all(x2 > x1) and set(t["frame_width"].to_pylist()) == {640}
    info = probe(out.video)  # type: ignore[arg-type]
    assert (info["codec"], info["pix_fmt"], info["frames"], info["fps"]) == ("h264", "yuv420p", 71, 25.0)
    assert info["faststart"]
    summary = json.loads(out.summary.read_text())  # type: ignore[union-attr]
    assert summary["frames"] == 71 and summary["tracks_per_class"]["person"] >= 5
    assert set(summary["stage_seconds"]) >= {"decode", "detect", "embed", "track", "write", "encode"}


def test_image_folder_source(fast_cfg, fast_models, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    imgs = tmp_path / "seq" / "img1"
    imgs.mkdir(parents=True)
    for p in sorted((TUD / "img1").glob("*.jpg"))[:12]:
        shutil.copy(p, imgs / p.name)
    out = VideoOutputs.in_dir(tmp_path / "o", "seq", annotated=False)
    s = process_video(imgs, out, fast_cfg, fast_models)
    assert s.frames == 12 and out.tracks.exists() and s.outputs["video"] is None


@pytest.mark.parametrize("name, start, seen", [("car-detection", 200, "car"),
                                               ("one-by-one-person-detection", 120, "person")])
def test_shared_street_videos(name: str, start: int, seen: str, shared_videos: Path, fast_cfg,  # type: ignore[no-untyped-def]
                              fast_models, tmp_path: Path) -> None:
    """20 frames of each street video from a moment with `seen` in view (the first 20 of the car
    video show none at this size): tracked, IDs 1..N, every frame drawn."""
    clip = cut_video(shared_videos / f"{name}.mp4", tmp_path / f"{name}.mp4", 20, start=start)
    out = VideoOutputs.in_dir(tmp_path, name)
    s = process_video(clip, out, fast_cfg, fast_models)
    assert s.frames == 20 and (s.width, s.height) == (768, 432)
    t = pq.read_table(out.tracks)
    assert t.num_rows > 0 and seen in set(t["class_name"].to_pylist())
    assert sorted(set(t["track_id"].to_pylist())) == list(range(1, sum(s.tracks_per_class.values()) + 1))
    assert probe(out.video)["frames"] == 20  # type: ignore[arg-type]


def test_isolation_and_determinism(short_clips: dict[str, Path], tud_video: Path, fast_cfg, fast_models,  # type: ignore[no-untyped-def]
                                   tmp_path: Path) -> None:
    """A, then B, then A in one process: both runs of A give byte-identical records."""
    a, b = tud_video, short_clips["one-by-one-person-detection"]
    runs = []
    for i, src in enumerate([a, b, a]):
        out = VideoOutputs.in_dir(tmp_path / str(i), "v", annotated=False)
        process_video(src, out, fast_cfg, fast_models, video_id="v", params_id="p", max_frames=24)
        runs.append(out.tracks.read_bytes())
    assert runs[0] == runs[2]
    assert pq.read_table(tmp_path / "0" / "v.tracks.parquet").num_rows > 0


def _truncated(tmp_path: Path, tud_video: Path) -> Path:
    # encoded without faststart, the moov atom is at the end: cut it off
    src = write_video(tmp_path / "full.mp4", [np.full((48, 64, 3), i, np.uint8) for i in range(30)])
    data = src.read_bytes()
    assert data.find(b"moov") > data.find(b"mdat")
    p = tmp_path / "truncated.mp4"
    p.write_bytes(data[: len(data) // 2])
    src.unlink()
    return p


def _bad_inputs(tmp_path: Path, tud_video: Path) -> dict[str, Path]:
    d = tmp_path / "in"
    d.mkdir()
    (d / "empty.mp4").write_bytes(b"")
    (d / "text.mp4").write_text("this is not a video\n" * 20)
    png = (TUD / "img1" / "000001.jpg").read_bytes()
    (d / "image.mp4").write_bytes(png)
    return {
        "empty": d / "empty.mp4", "text": d / "text.mp4", "image": d / "image.mp4",
        "truncated": _truncated(d, tud_video), "missing": d / "missing.mp4",
    }


@pytest.mark.parametrize("case, reason", [
    ("empty", "file is empty"), ("text", "not a readable video"), ("truncated", "not a readable video"),
    ("missing", "does not exist"),
])
def test_bad_input_clear_error_and_nothing_left(case: str, reason: str, tud_video: Path, fast_cfg,  # type: ignore[no-untyped-def]
                                                fast_models, tmp_path: Path) -> None:
    src = _bad_inputs(tmp_path, tud_video)[case]
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises(VideoError) as e:
        process_video(src, VideoOutputs.in_dir(out_dir, "v"), fast_cfg, fast_models)
    assert str(src) in str(e.value) and reason in str(e.value)
    assert list(out_dir.iterdir()) == []


def test_jpeg_named_mp4_is_a_one_frame_video(tud_video: Path, fast_cfg, fast_models,  # type: ignore[no-untyped-def]
                                             tmp_path: Path) -> None:
    """A JPEG named .mp4 is a one-frame image to FFmpeg: it processes as a 1-frame video."""
    src = _bad_inputs(tmp_path, tud_video)["image"]
    out_dir = tmp_path / "out"
    s = process_video(src, VideoOutputs.in_dir(out_dir, "v"), fast_cfg, fast_models)
    assert s.frames == 1 and probe(out_dir / "v.annotated.mp4")["frames"] == 1


@pytest.mark.parametrize("case", ["grayscale", "odd_size", "fps0_header"])
def test_unusual_inputs_process_correctly(case: str, fast_cfg, fast_models, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    frames = [np.full((49, 65, 3), 20 * i, np.uint8) for i in range(6)]
    if case == "grayscale":
        src = write_video(tmp_path / "g.mkv", [f[:48, :64, 0] for f in frames], codec="ffv1", pix_fmt="gray")
        size = (64, 48)
    elif case == "odd_size":
        src = write_video(tmp_path / "odd.mp4", frames, pix_fmt="yuv444p")
        size = (65, 49)
    else:
        # an AVI whose header says 0 frames per second (dwMicroSecPerFrame = dwScale = dwRate = 0)
        avi = write_video(tmp_path / "v.avi", [f[:48, :64] for f in frames], fps=10, codec="mpeg4")
        b = bytearray(avi.read_bytes())
        avih, strh = b.index(b"avih") + 8, b.index(b"strh") + 8
        assert b[strh:strh + 4] == b"vids"
        b[avih:avih + 4] = bytes(4)  # dwMicroSecPerFrame
        b[strh + 20:strh + 28] = bytes(8)  # dwScale, dwRate
        src = tmp_path / "fps0.avi"
        src.write_bytes(bytes(b))
        size = (64, 48)
    out = VideoOutputs.in_dir(tmp_path / "o", "v")
    s = process_video(src, out, fast_cfg, fast_models)
    assert s.frames == 6 and (s.width, s.height) == size
    info = probe(out.video)  # type: ignore[arg-type]
    assert info["frames"] == 6 and info["fps"] > 0 and info["codec"] == "h264"


def test_decode_error_mid_stream_fails_the_video(tud_video: Path, fast_cfg, fast_models,  # type: ignore[no-untyped-def]
                                                  tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An error raised by the decoder after some frames fails the whole video: no output
    that looks complete, never a silently shorter one."""
    from tracking import video as video_mod

    real = video_mod.VideoReader._iter_container

    def failing(self, *args):  # type: ignore[no-untyped-def]
        for i, frame in enumerate(real(self, *args)):
            if i == 20:
                raise VideoError(self.path, "decode failed after 20 frames (injected)")
            yield frame

    monkeypatch.setattr(video_mod.VideoReader, "_iter_container", failing)
    # widen the window between the decode thread queueing its end marker and recording its
    # error, so the consumer must wait for the thread rather than trust the marker
    from tracking import prefetch

    def slow_to_record(self):  # type: ignore[no-untyped-def]
        try:
            self._target_fn()
        except BaseException as e:
            time.sleep(2.0)
            self.error = e

    monkeypatch.setattr(prefetch._Worker, "run", slow_to_record)
    out_dir = tmp_path / "out"
    with pytest.raises(VideoError, match="after 20 frames"):
        process_video(tud_video, VideoOutputs.in_dir(out_dir, "v"), fast_cfg, fast_models)
    assert not out_dir.exists() or list(out_dir.iterdir()) == []


def _fail_after_real(cls: type, name: str, monkeypatch: pytest.MonkeyPatch, at_call: int = 1) -> None:
    """Make `cls.name` raise OSError on its `at_call`-th call, after doing its real work."""
    real, calls = getattr(cls, name), []

    def failing(self, *args):  # type: ignore[no-untyped-def]
        real(self, *args)
        calls.append(1)
        if len(calls) == at_call:
            raise OSError(f"{cls.__name__}.{name} failed (injected)")

    monkeypatch.setattr(cls, name, failing)


@pytest.mark.parametrize("failure", ["sink_close", "writer_close", "summary_write", "encode_write", "detect"])
def test_any_failure_leaves_no_output_at_all(failure: str, tud_video: Path, fast_cfg, fast_models,  # type: ignore[no-untyped-def]
                                             tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whichever part fails (the video sink's close, the Parquet writer's close after the
    video is already published, the summary after both, the encoder mid-stream, detection
    mid-stream), the error propagates and the output folder holds nothing: no .partial
    file, no half of a result."""
    from tracking.records import TrackTableWriter
    from tracking.video import VideoSink

    detect = None
    if failure == "sink_close":
        _fail_after_real(VideoSink, "_finish", monkeypatch)
    elif failure == "writer_close":
        _fail_after_real(TrackTableWriter, "_finish", monkeypatch)
    elif failure == "summary_write":
        from tracking import pipeline as pipeline_mod

        def failing_summary(path, data):  # type: ignore[no-untyped-def]
            raise OSError("summary write failed (injected)")
        monkeypatch.setattr(pipeline_mod, "write_json_atomic", failing_summary)
    elif failure == "encode_write":
        _fail_after_real(VideoSink, "write", monkeypatch, at_call=10)
    else:
        def detect(frames):  # type: ignore[no-untyped-def]
            if frames[0].index >= 8:
                raise OSError("detect failed (injected)")
            return fast_models.detector([f.bgr for f in frames])
    out_dir = tmp_path / "out"
    with pytest.raises(OSError, match="failed \\(injected\\)"):
        process_video(tud_video, VideoOutputs.in_dir(out_dir, "v"), fast_cfg, fast_models, detect=detect,
                      max_frames=16)
    assert sorted(p.name for p in out_dir.iterdir()) == []


def test_clean_runs_keep_every_output(tud_video: Path, fast_cfg, fast_models,  # type: ignore[no-untyped-def]
                                                   tmp_path: Path) -> None:
    """The all-or-nothing bookkeeping removes nothing after a clean run."""
    out = VideoOutputs.in_dir(tmp_path, "v")
    for _ in range(2):
        process_video(tud_video, out, fast_cfg, fast_models, max_frames=9)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.annotated.mp4", "v.summary.json", "v.tracks.parquet"]
    assert probe(out.video)["frames"] == 9  # type: ignore[arg-type]


def test_variable_frame_rate_video_keeps_the_sources_times(tud_video: Path, fast_cfg, fast_models,  # type: ignore[no-untyped-def]
                                                           tmp_path: Path) -> None:
    """A real VFR file (frame intervals from 33 ms to 220 ms, 1/1000 time base): every frame of
    the annotated video sits within one 90 kHz tick of its source frame, not re-timed to a
    constant rate; a constant-rate source keeps pts = frame index (its bytes as before)."""
    import av

    from tests.conftest import read_images
    from tracking.sink import sink_time_base

    gaps = [40, 40, 220, 33, 100, 67]
    pts = [0, *np.cumsum([gaps[i % len(gaps)] for i in range(11)]).tolist()]
    src = write_video(tmp_path / "vfr.mp4", read_images(TUD / "img1", 12), pts=pts, time_base=Fraction(1, 1000))
    out = VideoOutputs.in_dir(tmp_path / "out", "v")
    process_video(src, out, fast_cfg, fast_models)

    def times(path: Path) -> list[float]:
        with av.open(str(path)) as c:
            t = sorted(float(f.time) for f in c.decode(video=0))
        return [x - t[0] for x in t]

    want, got = times(src), times(out.video)  # type: ignore[arg-type]
    assert len(got) == len(want) == 12 and want[3] - want[2] == pytest.approx(0.220)
    assert max(abs(a - b) for a, b in zip(got, want, strict=True)) <= 1 / 90000 + 1e-9
    assert sink_time_base(times(tud_video), 25) is None  # constant rate: the encoder's time base is 1/25
