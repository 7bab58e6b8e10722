"""Count benchmark: a synthetic tracks dataset (default 10 million rows: 1,000 five-minute
videos of people walking straight across a 640x360 frame), then `vidtrack count` over it with
3 lines and 1 zone, and again with one line moved (no video is read either time). Each count
runs as its own process (`python -m jobs count`), so its seconds include start-up and its peak
memory is its own. Prints one line:

    python -m bench.count_bench                  # or: vidtrack-bench --count
    count: 10,000,000 rows, 1000 videos, 2 CPUs (load 0.3); 3 lines + 1 zone 7.9 s (12.0 CPU s), peak 1.20 GiB, ...

Synthetic, not a timed test: the numbers go to README's counting section.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from jobs.dataset.layout import DatasetLayout
from jobs.dataset.markers import DoneMarker, SourceIdentity
from jobs.storage import LocalStorage

PARAMS_ID = "synthetic-count"
FPS, FRAMES, SIZE = 25.0, 7500, (640, 360)
LINES = ("door=100,250,540,250", "aisle=320,40,320,340", "exit=500,60,620,200")
ZONE = "queue=60,60,300,60,300,200,60,200"
MOVED = "door=100,230,540,230"


def make_dataset(root: Path, rows: int, videos: int, seed: int = 0) -> None:
    """`videos` track files of about rows/videos rows each, with their `_done` markers."""
    rng = np.random.default_rng(seed)
    storage = LocalStorage(root)
    layout = DatasetLayout(storage, PARAMS_ID)
    layout.write_config({"params_id": PARAMS_ID, "parameters": {"detector": {"classes": ["person"]}}})
    per_video, track_len = rows // videos, 250
    for i in range(videos):
        vid = f"cam{i % 20:02d}-clip{i:05d}"
        table = _tracks(vid, rng, per_video, track_len)
        path = root / layout.tracks(vid)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path, compression="zstd")
        storage.put_bytes(layout.done(vid), DoneMarker(
            vid, f"cam{i % 20:02d}/2026-11-{1 + i // 100:02d}/{i % 100 // 4:02d}-{i % 4 * 15:02d}.mp4",
            SourceIdentity(1, "2026-11-01T00:00:00+00:00"), frames=FRAMES, fps=FPS, width=SIZE[0],
            height=SIZE[1]).to_bytes())


def _tracks(vid: str, rng: np.random.Generator, rows: int, length: int) -> pa.Table:
    """Tracks of `length` frames walking in a straight line between two random points, with
    a few pixels of box jitter; sorted by frame as the pipeline writes them."""
    n = rows // length
    start = rng.integers(0, FRAMES - length, n)
    p0 = rng.uniform((0, 60), SIZE, (n, 2))
    p1 = rng.uniform((0, 60), SIZE, (n, 2))
    step = np.arange(length) / (length - 1)
    xy = p0[:, None, :] + (p1 - p0)[:, None, :] * step[None, :, None] + rng.normal(0, 2, (n, length, 2))
    frame = (start[:, None] + np.arange(length)[None, :]).ravel().astype(np.int32)
    x, y = xy[..., 0].ravel(), xy[..., 1].ravel()
    total = n * length
    source = np.where(rng.random(total) < 0.9, "detected", "predicted")
    return pa.table({
        "video_id": pa.array([vid] * total), "frame_index": frame, "timestamp_s": frame / FPS,
        "track_id": pa.array(np.repeat(np.arange(1, n + 1), length), pa.int32()),
        "class_id": pa.array(np.zeros(total), pa.int16()), "class_name": pa.array(["person"] * total),
        "confidence": pa.array(np.full(total, 0.8), pa.float32()),
        "x1": pa.array(x - 20, pa.float32()), "y1": pa.array(y - 60, pa.float32()),
        "x2": pa.array(x + 20, pa.float32()), "y2": pa.array(y, pa.float32()),
        "matched": source == "detected", "box_source": pa.array(source),
        "frame_width": pa.array(np.full(total, SIZE[0]), pa.int32()),
        "frame_height": pa.array(np.full(total, SIZE[1]), pa.int32()),
        "params_id": pa.array([PARAMS_ID] * total),
    }).sort_by([("frame_index", "ascending"), ("track_id", "ascending")])


def timed_count(dataset: Path, lines: tuple[str, ...]) -> tuple[float, float, float, dict[str, object]]:
    """(seconds, CPU seconds, peak GiB, the JSON totals) of one `vidtrack count` process."""
    argv = [sys.executable, "-m", "jobs", "count", str(dataset), "--zone", ZONE, "--bucket", "1h", "--json"]
    for line in lines:
        argv += ["--line", line]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    if proc.returncode != 0:
        raise SystemExit(f"vidtrack count failed ({proc.returncode}): {proc.stderr.strip()}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20  # KiB -> GiB; the largest child so far
    return seconds, cpu, peak, json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.count_bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=10_000_000)
    p.add_argument("--videos", type=int, default=1000)
    p.add_argument("--keep", type=Path, help="build the dataset here and keep it (default: a temporary folder)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="vidtrack-count-bench-") as tmp:
        root = args.keep or Path(tmp)
        t0 = time.perf_counter()
        if not (root / PARAMS_ID / "config.json").exists():
            make_dataset(root, args.rows, args.videos)
        made = time.perf_counter() - t0
        dataset = root / PARAMS_ID
        rows = duckdb.connect().execute(f"select count(*) from read_parquet('{dataset}/tracks/*/*.parquet', "
                                        "hive_partitioning=false)").fetchall()[0][0]
        s1, c1, m1, first = timed_count(dataset, LINES)
        s2, c2, m2, moved = timed_count(dataset, (MOVED, *LINES[1:]))
        crossings = sum(v["in"] + v["out"] for v in first["lines"].values())  # type: ignore[attr-defined]
        print(f"count: {rows:,} rows, {args.videos} videos, {os.cpu_count()} CPUs (load {os.getloadavg()[0]:.1f}); "
              f"3 lines + 1 zone {s1:.1f} s ({c1:.1f} CPU s), peak {m1:.2f} GiB, {crossings:,} crossings; "
              f"moved line {s2:.1f} s ({c2:.1f} CPU s), peak {m2:.2f} GiB, set {moved['set_id']} vs "
              f"{first['set_id']}; dataset made in {made:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
