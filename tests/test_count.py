"""`vidtrack count`: line crossings and zone visits from a dataset's track rows (jobs/count/).

Synthetic tracks with known answers (both directions, touch and turn back, beyond a segment's
ends, jitter on the line, crossing twice, predicted boxes, an old dataset without `box_source`),
a real shared video counted through the real pipeline, the same dataset on the moto S3 server,
and bad input (one line on stderr, exit 2, nothing written)."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import av
import cv2
import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs.cli import main
from jobs.count.geometry import CountError, parse_line, parse_zone
from jobs.count.settings import Clock, CountSpec
from jobs.dataset.layout import DatasetLayout
from jobs.dataset.markers import DoneMarker, SourceIdentity
from jobs.storage import LocalStorage
from tests.conftest import MODEL, VIDEOS, need_shared, read_frames, write_video
from tracking.records import TRACK_SCHEMA

PARAMS_ID = "p0count"
DOOR = "door=50,200,400,200"  # drawn left to right: `in` is down the picture
BOX = "box=80,180,320,180,320,260,80,260"

# track id -> anchor path (x, bottom y) one frame apart at 10 fps, and what it must count on DOOR
PATHS: dict[int, list[tuple[float, float]]] = {
    1: [(100, 100 + 10 * i) for i in range(20)],  # down across the door: in
    2: [(150, 300 - 10 * i) for i in range(20)],  # up across it: out
    3: [(200, 150 + 5 * i) for i in range(10)] + [(200, 195 - 5 * i) for i in range(10)],  # touches, turns back
    4: [(500, 100 + 10 * i) for i in range(20)],  # crosses the line's extension beyond B: nothing
    5: [(250, 150 + 10 * i) for i in range(6)] + [(250, 200 + (3 if i % 2 else -3)) for i in range(10)]
       + [(250, 220 + 10 * i) for i in range(5)],  # jitters on the line (within the band), then crosses once
    6: [(300, 150 + 10 * i) for i in range(10)] + [(300, 250 - 10 * i) for i in range(10)],  # crosses twice
}


def write_dataset(root: Path, tracks: dict[str, dict[int, list[tuple[float, float]]]], *, key: str = "cam1/{}.mp4",
                  sources: dict[str, dict[int, list[str]]] | None = None, old: bool = False,
                  done: tuple[str, ...] | None = None) -> Path:
    """A dataset of synthetic videos (640x480, 10 fps; boxes 20x50 above their anchor), with
    `_done` markers for `done` (default all). `old`: track files without `box_source`."""
    storage = LocalStorage(root)
    layout = DatasetLayout(storage, PARAMS_ID)
    layout.write_config({"params_id": PARAMS_ID, "parameters": {"detector": {"classes": ["person", "car"]}}})
    for vid, paths in tracks.items():
        rows = [dict(video_id=vid, frame_index=f, timestamp_s=f / 10, track_id=tid, class_id=0, class_name="person",
                     confidence=0.9, x1=x - 10, y1=y - 50, x2=x + 10, y2=y, matched=True,
                     box_source=((sources or {}).get(vid, {}).get(tid) or ["detected"] * len(pts))[f],
                     frame_width=640, frame_height=480, params_id=PARAMS_ID)
                for tid, pts in paths.items() for f, (x, y) in enumerate(pts)]
        table = pa.Table.from_pylist(rows, schema=TRACK_SCHEMA)
        if old:
            table = table.drop_columns(["box_source"])
        path = root / layout.tracks(vid)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path)
        if done is None or vid in done:
            frames = max(len(p) for p in paths.values())
            marker = DoneMarker(vid, key.format(vid), SourceIdentity(1, "2026-11-20T00:00:00+00:00"), frames=frames,
                                fps=10.0, width=640, height=480, tracks_per_class={"person": len(paths)})
            storage.put_bytes(layout.done(vid), marker.to_bytes())
    return root / PARAMS_ID


def count_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    assert main(["count", *argv, "--json"]) == 0
    out: dict[str, Any] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    return out


def test_synthetic_crossings_have_known_answers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ds = write_dataset(tmp_path, {"v1": PATHS})
    got = count_json(capsys, str(ds), "--line", DOOR, "--zone", BOX, "--hysteresis", "4")
    assert got["lines"] == {"door": {"in": 3, "out": 2}}  # 1, 5, 6 in; 2, 6 out
    events = duckdb.sql(f"select track_id, direction from '{got['events']}' where kind = 'line' "
                        "order by track_id, frame_index").fetchall()
    assert events == [(1, "in"), (2, "out"), (5, "in"), (6, "in"), (6, "out")]
    # the box zone: 1, 2, 3, 6 go in and out, 5 goes in and stays to its last row; 4 is never in it
    assert got["zones"]["box"]["entries"] == 5 and got["zones"]["box"]["exits"] == 4
    visits = duckdb.sql(f"select track_id, entered, exited, dwell_s from "
                        f"'{Path(got['events']).with_name('visits.parquet')}' order by track_id").fetchall()
    assert [v[:3] for v in visits] == [(1, True, True), (2, True, True), (3, True, True), (5, True, False),
                                       (6, True, True)]
    assert visits[0][3] == pytest.approx(0.8)  # y 190 -> 270 at 10 px a frame, 10 fps
    assert got["clock"] == "footage" and got["videos"] == 1


def test_jitter_beyond_the_band_counts_and_hysteresis_is_what_stops_it(tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    ds = write_dataset(tmp_path, {"v1": {5: PATHS[5]}})
    assert count_json(capsys, str(ds), "--line", DOOR, "--hysteresis", "4")["lines"]["door"] == {"in": 1, "out": 0}
    # without a band every +-3 px wobble across y=200 is a crossing
    assert count_json(capsys, str(ds), "--line", DOOR, "--hysteresis", "0")["lines"]["door"]["in"] > 3


def test_predicted_boxes_do_not_move_the_anchor_and_old_datasets_count_everything(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A track that coasts across the line on predictions only is not counted; a dataset written
    before `box_source` existed counts every box as detected."""
    coast = {1: [(100, 150 + 10 * i) for i in range(10)]}  # crosses y=200 at frame 5
    sources = {"v1": {1: ["detected"] * 4 + ["predicted"] * 6}}
    ds = write_dataset(tmp_path / "new", {"v1": coast}, sources=sources)
    assert count_json(capsys, str(ds), "--line", DOOR)["lines"]["door"] == {"in": 0, "out": 0}
    interpolated = {"v1": {1: ["detected"] * 4 + ["interpolated"] * 5 + ["detected"]}}
    ds = write_dataset(tmp_path / "interp", {"v1": coast}, sources=interpolated)
    assert count_json(capsys, str(ds), "--line", DOOR)["lines"]["door"] == {"in": 1, "out": 0}
    old = write_dataset(tmp_path / "old", {"v1": coast}, old=True)
    assert count_json(capsys, str(old), "--line", DOOR)["lines"]["door"] == {"in": 1, "out": 0}


def test_only_done_videos_count_and_moving_a_line_writes_a_new_set(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    ds = write_dataset(tmp_path, {"v1": PATHS, "v2": PATHS}, done=("v1",))
    first = count_json(capsys, str(ds), "--line", DOOR)
    assert first["videos"] == 1 and first["lines"]["door"] == {"in": 3, "out": 2}
    moved = count_json(capsys, str(ds), "--line", "door=50,120,400,120")  # only tracks 1 (down) and 2 (up) reach it
    assert moved["set_id"] != first["set_id"] and moved["lines"]["door"] == {"in": 1, "out": 1}
    folders = sorted(p.name for p in (ds / "counts").iterdir())
    assert folders == sorted([first["set_id"], moved["set_id"]])
    for folder in folders:
        assert sorted(p.name for p in (ds / "counts" / folder).iterdir()) == ["count.json", "events.parquet",
                                                                              "visits.parquet"]
    schema = pq.read_schema(ds / "counts" / first["set_id"] / "events.parquet")
    assert schema.names == ["video_id", "source_key", "track_id", "class_name", "kind", "name", "direction",
                            "frame_index", "timestamp_s", "wall_time", "x", "y"]


def test_wall_clock_buckets_from_the_key_pattern(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Two videos of one camera starting 08:00 and 08:20 local time (Berlin, UTC+1): buckets of
    15 minutes on the wall clock; the output says which clock it used."""
    ds = write_dataset(tmp_path, {"a": PATHS, "b": PATHS}, key="cam1/2026-11-20/{}.mp4")
    keys = {"a": "cam1/2026-11-20/08-00.mp4", "b": "cam1/2026-11-20/08-20.mp4"}
    layout = DatasetLayout(LocalStorage(tmp_path), PARAMS_ID)
    for vid, key in keys.items():
        m = DoneMarker.from_bytes(layout.storage.read_bytes(layout.done(vid)))
        layout.storage.put_bytes(layout.done(vid), DoneMarker(vid, key, m.source, frames=m.frames, fps=10.0,
                                                              width=640, height=480).to_bytes())
    out = tmp_path / "counts.csv"
    got = count_json(capsys, str(ds), "--line", DOOR, "--bucket", "15min", "--clock-pattern", "*/%Y-%m-%d/%H-%M.mp4",
                     "--timezone", "Europe/Berlin", "--out", str(out))
    assert got["clock"] == "wall" and got["lines"]["door"] == {"in": 6, "out": 4}
    rows = duckdb.sql(f"select bucket, \"in\", \"out\" from read_csv('{out}', all_varchar=true) "
                      "where kind = 'line' order by bucket").fetchall()
    assert rows == [("2026-11-20T07:00:00Z", "3", "2"), ("2026-11-20T07:15:00Z", "3", "2")]
    # the window on the same clock keeps the second video's crossings only
    got = count_json(capsys, str(ds), "--line", DOOR, "--clock-pattern", "*/%Y-%m-%d/%H-%M.mp4", "--timezone",
                     "Europe/Berlin", "--since", "2026-11-20T08:10:00+01:00")
    assert got["lines"]["door"] == {"in": 3, "out": 2}


def test_wall_clock_from_the_containers_creation_time(tmp_path: Path, fast_cfg, fast_models,  # type: ignore[no-untyped-def]
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """A recording whose container says when it started (`creation_time`) has that start
    recorded when it is processed (summary, then `_done`), and `--clock-pattern container`
    buckets its crossings on the wall clock from it; a video without one is a one-line error."""
    from tracking.pipeline import VideoOutputs, process_video

    with av.open(str(tmp_path / "stamped.mp4"), "w") as c:  # a real H.264 MP4 that says when it started
        c.metadata["creation_time"] = "2026-11-20T08:00:00.000000Z"
        stream = c.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(6):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 40 * i, np.uint8), format="bgr24")
            for packet in stream.encode(frame):
                c.mux(packet)
        for packet in stream.encode(None):
            c.mux(packet)
    summary = process_video(tmp_path / "stamped.mp4", VideoOutputs.in_dir(tmp_path / "o", "rec", annotated=False),
                            fast_cfg, fast_models)
    assert summary.start_time.startswith("2026-11-20T08:00:00")
    ds = write_dataset(tmp_path / "ds", {"a": PATHS, "b": PATHS})
    layout = DatasetLayout(LocalStorage(tmp_path / "ds"), PARAMS_ID)
    m = DoneMarker.from_bytes(layout.storage.read_bytes(layout.done("a")))
    layout.storage.put_bytes(layout.done("a"), dataclasses.replace(m, start_time=summary.start_time).to_bytes())
    args = ["--line", DOOR, "--bucket", "1h", "--clock-pattern", "container"]
    got = count_json(capsys, str(ds), *args, "--video", "a")
    assert got["clock"] == "wall" and got["lines"]["door"] == {"in": 3, "out": 2}
    assert main(["count", str(ds), *args]) == 2  # video b: no creation_time recorded
    assert "'cam1/b.mp4' has no creation_time from its container" in capsys.readouterr().err


def test_the_anchor_is_the_point_that_crosses(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Feet (bottom centre) cross y=200, the box's centre (25 px higher) stays above it."""
    ds = write_dataset(tmp_path, {"v1": {1: [(100, 150 + 5 * i) for i in range(14)]}})  # bottom 150 -> 215
    assert count_json(capsys, str(ds), "--line", DOOR)["lines"]["door"] == {"in": 1, "out": 0}
    assert count_json(capsys, str(ds), "--line", DOOR, "--anchor", "center")["lines"]["door"] == {"in": 0, "out": 0}


def test_toml_maps_key_globs_to_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ds = write_dataset(tmp_path, {"v1": PATHS})
    cfg = tmp_path / "cams.toml"
    cfg.write_text('hysteresis_px = 4\n[[camera]]\nkey = "cam2/*"\nlines = { other = [0, 10, 600, 10] }\n'
                   '[[camera]]\nkey = "cam1/*"\nlines = { door = [50, 200, 400, 200] }\n'
                   'zones = { box = [80, 180, 320, 180, 320, 260, 80, 260] }\n')
    got = count_json(capsys, str(ds), "--config", str(cfg))
    assert got["lines"] == {"door": {"in": 3, "out": 2}} and got["zones"]["box"]["entries"] == 5

    from jobs.count.report import line_counts_over_time
    from jobs.count.settings import spec_from_file

    before = sorted(tmp_path.rglob("*"))
    section = line_counts_over_time(LocalStorage(tmp_path), PARAMS_ID, spec_from_file(cfg))
    assert section.totals == {"door": {"in": 3, "out": 2}} and section.buckets == ["+0:00:00"]  # hours by default
    assert sorted(tmp_path.rglob("*")) == before  # the report's counts write nothing


def test_each_camera_counts_its_own_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Two cameras with different lines and zones (the per-video geometry path, joined per row),
    plus a command-line line for both."""
    ds = write_dataset(tmp_path, {"a": PATHS, "b": PATHS}, key="{}/clip.mp4")
    cfg = tmp_path / "cams.toml"
    cfg.write_text('[[camera]]\nkey = "a/*"\nlines = { door = [50, 200, 400, 200] }\n'
                   'zones = { box = [80, 180, 320, 180, 320, 260, 80, 260] }\n'
                   '[[camera]]\nkey = "b/*"\nlines = { door = [50, 120, 400, 120] }\n'
                   'zones = { box = [480, 150, 560, 150, 560, 250, 480, 250] }\n')
    got = count_json(capsys, str(ds), "--config", str(cfg), "--line", "all=50,200,400,200", "--hysteresis", "4")
    assert got["lines"] == {"all": {"in": 6, "out": 4}, "door": {"in": 3 + 1, "out": 2 + 1}}
    assert got["zones"]["box"]["entries"] == 5 + 1  # b's box: only track 4 walks through it
    assert got["zones"]["box"]["exits"] == 4 + 1


@pytest.mark.parametrize(("args", "message"), [
    (["--line", "door=50,200,900,200"], "line 'door' (50,200)-(900,200) lies outside the 640x480 frame"),
    (["--line", "door=10,10,10,10"], "line 'door' (10,10)-(10,10) has zero length"),
    (["--zone", "z=1,1,50,50"], "zone 'z' (1,1)-(50,50): a zone needs at least 3 points"),
    (["--zone", "z=0,0,100,100,100,0,0,100"], "crosses itself"),
    (["--line", DOOR, "--class", "persn"], "class 'persn' is not in this dataset"),
    (["--line", DOOR, "--video", "nope"], "video 'nope' is not a complete video"),
    (["--line", "door=1,2,3"], "line 'door': expected 4 numbers"),
    (["--line", DOOR, "--bucket", "soon"], "bucket 'soon'"),
    (["--line", DOOR, "--since", "2026-11-20T08:00"], "a date-time window needs the wall clock"),
    (["--line", DOOR, "--clock-pattern", "*/%Y/%H.mp4"], "does not match the key 'cam1/v1.mp4'"),
    (["--line", DOOR, "--line", "door=0,0,5,5"], "the name 'door' is used twice"),
])
def test_bad_input_is_one_line_exit_2_nothing_written(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                       args: list[str], message: str) -> None:
    ds = write_dataset(tmp_path, {"v1": PATHS})
    before = sorted(p for p in tmp_path.rglob("*"))
    assert main(["count", str(ds), *args, "--out", str(tmp_path / "o.csv")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and err.startswith("vidtrack count: error: ")
    assert sorted(p for p in tmp_path.rglob("*")) == before


def test_a_path_that_is_not_a_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "videos").mkdir()
    assert main(["count", str(tmp_path / "videos"), "--line", DOOR]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a vidtrack dataset" in err and str(tmp_path / "videos") in err
    assert list((tmp_path / "videos").iterdir()) == []


def test_geometry_rules() -> None:
    line = parse_line("a=0,0,10,0")
    assert line.in_normal() == pytest.approx((0.0, 1.0))  # left to right on the screen: `in` is down
    assert parse_line("a=0,10,0,0").in_normal() == pytest.approx((1.0, 0.0))  # upwards: `in` is to the right
    assert len(parse_zone("z=0,0,10,0,10,10,0,0").points) == 3  # a closing point repeated is dropped
    with pytest.raises(CountError, match="not a list of numbers"):
        parse_line("a=1,x,2,3")
    with pytest.raises(CountError, match="needs a year"):
        Clock("*/%H-%M.mp4")
    start = Clock("*/%Y-%m-%d/%H-%M.mp4").start("x/2026-11-20/08-00.mp4")
    assert start == datetime(2026, 11, 20, 8, tzinfo=UTC).timestamp()
    assert CountSpec(lines=(line,)).document() != CountSpec(lines=(parse_line("a=0,0,11,0"),)).document()


# -- the real pipeline on a shared video ------------------------------------------------------

REAL_LINES = ["--line", "entry=600,410,300,410", "--line", "exit=600,432,600,300",
              "--zone", "table=380,330,540,330,540,420,380,420"]


@pytest.fixture(scope="module")
def doorway(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """one-by-one-person-detection.mp4 (768x432, 10 fps), frames 60-459, every second one
    (200 frames at 5 fps), tracked by the real pipeline (yolov8n at imgsz 320) and laid out as
    a dataset with its `_done` marker and annotated video, as the job publishes them."""
    from jobs.config import load_config
    from tracking.pipeline import Models, VideoOutputs, process_video

    src = VIDEOS / "one-by-one-person-detection.mp4"
    need_shared(src, MODEL)
    tmp = tmp_path_factory.mktemp("doorway")
    frames = read_frames(src, 400, start=60)[::2]
    clip = write_video(tmp / "doorway.mp4", frames, fps=5)
    cfg = load_config(None, [f"detector.model={MODEL}", "detector.imgsz=320", "detector.classes=['person']"])
    outputs = VideoOutputs.in_dir(tmp / "out", "doorway", annotated=True)
    s = process_video(clip, outputs, cfg, Models.load(cfg), video_id="doorway", params_id=PARAMS_ID)
    storage = LocalStorage(tmp / "ds")
    layout = DatasetLayout(storage, PARAMS_ID)
    layout.write_config({"params_id": PARAMS_ID, "parameters": cfg.to_dict()})
    storage.upload(outputs.tracks, layout.tracks("doorway"))
    assert outputs.video is not None
    storage.upload(outputs.video, layout.video("doorway"))
    storage.put_bytes(layout.done("doorway"), DoneMarker(
        "doorway", "lobby/one-by-one.mp4", SourceIdentity(clip.stat().st_size, "2026-11-20T00:00:00+00:00"),
        frames=s.frames, fps=s.fps, width=s.width, height=s.height).to_bytes())
    return tmp / "ds" / PARAMS_ID


def test_real_video_doorway_counts(doorway: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Two people, one at a time, walk up from the bottom edge to the table and leave to the right.

    Verified by eye: the cut's frames 3, 5, 7, 9, 62-68, 88-94 and 186-192 were decoded with
    PyAV, drawn over with these lines and zone (jobs.count.preview.draw), tiled into one PNG and
    looked at: the woman's feet cross `entry` upwards between frames 5 and 7 and `exit` to the
    right between 64 and 66; the man's between 90 and 92, and 188 and 190. Each stands in
    `table` in between. So: entry in 2 out 0, exit in 2 out 0, table 2 entries and 2 exits."""
    got = count_json(capsys, str(doorway), *REAL_LINES)
    assert got["lines"] == {"entry": {"in": 2, "out": 0}, "exit": {"in": 2, "out": 0}}
    assert (got["zones"]["table"]["entries"], got["zones"]["table"]["exits"]) == (2, 2)
    assert got["zones"]["table"]["mean_dwell_s"] > 8  # they stand there for 11 s and 20 s
    png = tmp_path / "preview.png"
    assert main(["count", str(doorway), *REAL_LINES, "--preview", str(png)]) == 0
    img = cv2.imread(str(png))
    assert img.shape == (432, 768, 3)
    yellow = (img[:, :, 0] < 60) & (img[:, :, 1] > 180) & (img[:, :, 2] > 220)
    assert yellow[405:415, 320:580].any() and yellow[310:430, 595:605].any()  # both lines are drawn


def test_real_video_over_s3_matches(doorway: Path, s3: str, capsys: pytest.CaptureFixture[str],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The same dataset on the moto S3 server: the same counts; the events go to S3."""
    from jobs.storage import S3Storage

    remote = S3Storage("s3://counts/tracks/", s3)
    remote.client.create_bucket(Bucket="counts")
    local = LocalStorage(doorway.parent)
    for obj in local.list(PARAMS_ID + "/"):
        if "/counts/" not in obj.key:
            remote.upload(doorway.parent / obj.key, obj.key)
    got = count_json(capsys, f"s3://counts/tracks/{PARAMS_ID}", *REAL_LINES, "--s3-endpoint-url", s3)
    assert got["lines"] == {"entry": {"in": 2, "out": 0}, "exit": {"in": 2, "out": 0}}
    assert got["events"] == f"s3://counts/tracks/{PARAMS_ID}/counts/{got['set_id']}/events.parquet"
    events = remote.read_bytes(f"{PARAMS_ID}/counts/{got['set_id']}/events.parquet")
    assert pq.read_table(pa.BufferReader(events)).num_rows == 8

    from jobs.count.report import line_counts_over_time
    from jobs.count.settings import CountSpec as Spec

    section = line_counts_over_time(remote, PARAMS_ID, Spec(lines=(parse_line("entry=600,410,300,410"),),
                                                            bucket_s=10.0))
    assert section.clock == "footage" and section.totals == {"entry": {"in": 2, "out": 0}}
    assert section.buckets == ["+0:00:00", "+0:00:10"]  # crossings at 1.4 s and 18.4 s of footage
    assert section.series == {("entry", "in"): [1, 1], ("entry", "out"): [0, 0]}


def test_the_report_shows_line_counts_over_time(doorway: Path, tmp_path: Path) -> None:
    """`vidtrack report DATASET --counts FILE` adds a section with each line's crossings per
    direction, totals and per hour, the same numbers `vidtrack count` gives (test above)."""
    cfg = tmp_path / "doorway.toml"
    cfg.write_text('[[camera]]\nkey = "lobby/*"\n'
                   'lines = { entry = [600, 410, 300, 410], exit = [600, 432, 600, 300] }\n')
    html = tmp_path / "report.html"
    assert main(["report", str(doorway), "--counts", str(cfg), "--out", str(html)]) == 0
    page = html.read_text()
    section = page[page.index('<section id="counts">'):]
    section = section[:section.index("</section>")]
    assert "<h2>Line counts</h2>" in section and "footage time" in section
    totals = section[section.index("<h3>Totals</h3>"):section.index("<h3>Over time</h3>")]
    rows = [[c.split(">")[-1] for c in r.split("</td>")[:-1]] for r in totals.split("<tr>")[2:]]
    assert rows == [["entry", "2", "0"], ["exit", "2", "0"]]
    bad = tmp_path / "bad.toml"
    bad.write_text('[[camera]]\nkey = "*"\nlines = { flat = [10, 10, 10, 10] }\n')
    assert main(["report", str(doorway), "--counts", str(bad), "--out", str(tmp_path / "no.html")]) == 2
    assert not (tmp_path / "no.html").exists()
