"""Report benchmark: a synthetic dataset of N videos (three runs' manifests, one from a newer
job with an extra column and a status the report does not know; _done markers; a track file
per video; a few annotated videos), then `jobs.report.build_report` over it. Prints one line:

    python -m bench.report_bench --videos 2000
    report: 2000 videos, 3 runs, 61234 tracks, 1.9M track rows; build 9.8 s; page 0.61 MB ...

Synthetic, not a timed test: the numbers go to README's report section.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from jobs.dataset.layout import DatasetLayout
from jobs.storage import LocalStorage
from tracking.records import TRACK_SCHEMA
from tracking.tracks import BOX_SOURCES, DETECTED, PREDICTED

PARAMS_ID = "synthetic0001"
FPS = 25.0
FRAMES = 7500  # 5 minutes a video
SHORT_FRAMES = 250  # the annotated videos are 10 s, all their tracks inside
CLASSES: tuple[tuple[str, int, float], ...] = (  # name, COCO id, share of tracks
    ("person", 0, 0.7), ("car", 2, 0.2), ("bicycle", 1, 0.05), ("truck", 7, 0.03), ("dog", 16, 0.02))
ERRORS = (("VideoError", "not a readable video container (InvalidDataError: Invalid data found)"),
          ("RuntimeError", "no frames processed"), ("UnsupportedCodecError", "codec 'prores' is not supported"))
NODES = 8
SIZE = (640, 360)


def make_synthetic_dataset(root: Path, videos: int, tracks_per_video: int = 30, annotated: int = 4,
                           seed: int = 0) -> tuple[LocalStorage, str]:
    """Write the dataset under `root`; returns (storage, params_id)."""
    rng = np.random.default_rng(seed)
    storage = LocalStorage(root)
    layout = DatasetLayout(storage, PARAMS_ID)
    layout.write_config({"params_id": PARAMS_ID, "parameters": {"detector": {"imgsz": 640}, "tracker": {"max_age": 30}},
                         "model": {"uri": "yolov8n.pt", "sha256": "0" * 64}, "versions": {"vidtrack": "synthetic"},
                         "created_at": "2026-11-01T00:00:00+00:00"})
    ids = [f"cam{i % 50:02d}-clip{i:05d}-{i * 2654435761 % 16**8:08x}" for i in range(videos)]
    outcome = rng.choice(["ok", "failed", "lost_ok"], size=videos, p=[0.96, 0.03, 0.01])
    for i, vid in enumerate(ids):
        if outcome[i] != "failed":
            frames = SHORT_FRAMES if i < annotated else FRAMES
            _write_tracks(storage.root / layout.tracks(vid), vid, rng, tracks_per_video, frames)
            layout.storage.put_bytes(layout.done(vid), json.dumps(
                {"video_id": vid, "source_key": _key(vid), "frames": frames, "fps": FPS, "width": SIZE[0],
                 "height": SIZE[1], "finished_at": "2026-11-02T00:00:00+00:00"}).encode())
            if i < annotated:
                _write_video(storage.root / layout.video(vid), frames)
    _write_manifests(storage, layout, ids, outcome, rng)
    return storage, PARAMS_ID


def _key(video_id: str) -> str:
    return f"archive/{video_id[:5]}/{video_id}.mp4"


def _write_tracks(path: Path, vid: str, rng: np.random.Generator, n: int, frames: int) -> None:
    lengths = np.clip(np.exp(rng.normal(3.2, 1.3, n)).astype(int), 1, frames // 2)
    starts = rng.integers(0, frames - lengths + 1)
    idx = np.repeat(np.arange(n), lengths)
    offset = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    frame = (starts[idx] + offset).astype(np.int32)
    names, cids = [c[0] for c in CLASSES], [c[1] for c in CLASSES]
    cls = rng.choice(len(CLASSES), size=n, p=[c[2] for c in CLASSES])
    x = rng.uniform(0, SIZE[0] - 80, n)[idx] + offset * rng.normal(0, 0.5, n)[idx]
    y = rng.uniform(0, SIZE[1] - 120, n)[idx]
    matched = rng.random(len(idx)) < 0.9
    conf = np.where(matched, rng.uniform(0.3, 0.95, len(idx)), np.nan)
    table = pa.table({  # the track table's own columns (tracking/records.py)
        "video_id": pa.array([vid] * len(idx)), "frame_index": frame, "timestamp_s": frame / FPS,
        "track_id": pa.array(idx + 1, pa.int32()), "class_id": pa.array(np.asarray(cids)[cls][idx], pa.int16()),
        "class_name": pa.array(np.asarray(names)[cls][idx]),
        "confidence": pa.array(conf, pa.float32(), from_pandas=True),
        "x1": pa.array(np.clip(x, 0, SIZE[0] - 80), pa.float32()), "y1": pa.array(y, pa.float32()),
        "x2": pa.array(np.clip(x, 0, SIZE[0] - 80) + 60, pa.float32()), "y2": pa.array(y + 110, pa.float32()),
        "matched": matched, "box_source": np.asarray(BOX_SOURCES)[np.where(matched, DETECTED, PREDICTED)],
        "frame_width": pa.array(np.full(len(idx), SIZE[0]), pa.int32()),
        "frame_height": pa.array(np.full(len(idx), SIZE[1]), pa.int32()), "params_id": pa.array([PARAMS_ID] * len(idx)),
    }, schema=TRACK_SCHEMA).sort_by([("frame_index", "ascending"), ("track_id", "ascending")])
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, compression="zstd")


def _write_video(path: Path, frames: int) -> None:
    """A small H.264 video whose frames change over time (crops differ from moment to moment)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=Fraction(int(FPS)))
        s.width, s.height, s.pix_fmt = *SIZE, "yuv420p"
        s.options = {"preset": "ultrafast"}
        ys, xs = np.mgrid[0:SIZE[1], 0:SIZE[0]]
        for i in range(frames):
            img = np.stack([(xs + i * 3) % 256, (ys + i) % 256, np.full_like(xs, (i * 5) % 256)], -1).astype(np.uint8)
            f = av.VideoFrame.from_ndarray(img, format="bgr24")
            f.pts = i
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)


def _write_manifests(storage: LocalStorage, layout: DatasetLayout, ids: list[str], outcome: np.ndarray,
                     rng: np.random.Generator) -> None:
    """Run 1 processes the first 60 %, run 2 the rest (skipping run 1's), run 3 (a newer job:
    an extra `frames_declared` column, status `retryable`) retries the failures."""
    nodes = [f"{rng.integers(0, 2**63):016x}" * 3 + f"{k:08x}" for k in range(NODES)]
    cut = int(len(ids) * 0.6)
    runs: list[tuple[str, list[dict[str, Any]]]] = [("20261101T010000Z-aaaaaa", []), ("20261102T010000Z-bbbbbb", []),
                                                     ("20261103T010000Z-cccccc", [])]
    for i, vid in enumerate(ids):
        run = 0 if i < cut else 1
        rows = runs[run][1]
        frames = SHORT_FRAMES if i < 4 else FRAMES
        node = nodes[i % NODES]
        if outcome[i] == "lost_ok":
            rows.append(_row(vid, 1, "lost", 0, node, rng, run, ("RayActorError", "The actor died unexpectedly")))
        if outcome[i] == "failed":
            rows.append(_row(vid, 1, "failed", 0, node, rng, run, ERRORS[i % len(ERRORS)]))
            runs[2][1].append({**_row(vid, 1, "retryable", 0, node, rng, 2, ERRORS[i % len(ERRORS)]),
                               "frames_declared": frames})
        else:
            rows.append(_row(vid, 2 if outcome[i] == "lost_ok" else 1, "ok", frames, node, rng, run))
            runs[2][1].append({**_row(vid, 0, "skipped", 0, "", rng, 2), "frames_declared": frames})
    for i in range(cut):
        runs[1][1].append(_row(ids[i], 0, "skipped", 0, "", rng, 1))
    for run_id, rows in runs:
        path = storage.root / layout.manifest(run_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist([{"run_id": run_id, "params_id": PARAMS_ID, **r} for r in rows]), path)


def _row(vid: str, attempt: int, status: str, frames: int, node: str, rng: np.random.Generator, run: int,
         error: tuple[str, str] = ("", "")) -> dict[str, Any]:
    seconds = float(frames / rng.uniform(15, 25)) if frames else 0.0
    stages = {"decode": 0.1 * seconds, "detect": 0.45 * seconds, "embed": 0.25 * seconds, "track": 0.12 * seconds,
              "write": 0.02 * seconds, "encode": 0.2 * seconds} if frames else {}
    t0 = 1_793_494_800 + run * 86400 + rng.uniform(0, 3600)
    iso = [time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(t)) for t in (t0, t0 + seconds)]
    return {"video_id": vid, "source_key": _key(vid), "attempt": attempt, "status": status, "error_class": error[0],
            "error_message": f"{_key(vid)}: {error[1]}" if error[0] else "", "frames": frames, "rows": 0,
            "bytes_in": frames * 2000, "seconds": round(seconds, 3),
            "stage_seconds": json.dumps({k: round(v, 3) for k, v in stages.items()}), "node_id": node,
            "worker_pid": 1000 + run, "started_at": iso[0] if status != "skipped" else "",
            "finished_at": iso[1] if status != "skipped" else ""}


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.report_bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--videos", type=int, default=2000)
    p.add_argument("--keep", type=Path, help="build the dataset here and keep it (default: a temporary folder)")
    args = p.parse_args()
    from jobs.report import build_report

    with tempfile.TemporaryDirectory(prefix="vidtrack-report-bench-") as tmp:
        root = args.keep or Path(tmp)
        t0 = time.perf_counter()
        storage, params_id = make_synthetic_dataset(root, args.videos)
        t1 = time.perf_counter()
        page = build_report(storage, params_id)
        t2 = time.perf_counter()
        (root / params_id / "report.html").write_bytes(page)
        text = page.decode()
        start = text.index('id="vidtrack-summary">') + len('id="vidtrack-summary">')
        s = json.loads(text[start:text.index("</script>", start)])
        print(f"report: {args.videos} videos, {s['runs']} runs, {s['tracks']:,} tracks, {s['track_rows']:,} track rows;"
              f" build {t2 - t1:.1f} s; page {len(page) / 1e6:.2f} MB (dataset made in {t1 - t0:.1f} s)")


if __name__ == "__main__":
    main()
