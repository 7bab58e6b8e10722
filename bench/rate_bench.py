"""`python -m bench.rate_bench`: frames per second of `vidtrack track` at 1, 1/2, 1/3 and 1/4 of
each video's native rate (`detector.max_fps` = fps / k), against the naive per-frame pipeline
(../shared/bench/seed_pipeline.py), every contender a whole process of its own, one after the
other, on the same videos: TUD-Campus as H.264 (25 fps), the car clip and the first 400 frames of
the one-by-one clip. One line per run and a JSON file (--json). Each run's CPU seconds (user + system
of the process and its children) beside its wall time: on a shared machine, other load stretches
wall time far more than the CPU time a run needs.

    python -m bench.rate_bench --repeat 2 --json out/rate-bench.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.run import SHARED, _as_video, _cpu_line, _timed, _track_cmd


def _timed_cpu(cmd: list[str], cwd: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one whole process."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = _timed(cmd, cwd)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _cut(src: Path, dst: Path, frames: int) -> Path:
    """The first `frames` frames of `src`, re-encoded (H.264, same size and rate)."""
    from tracking.video import VideoReader, VideoSink

    with VideoReader(src) as r, VideoSink(dst, r.info.width, r.info.height, r.info.fps, crf=20,
                                          preset="veryfast") as sink:
        for f, _ in zip(r, range(frames), strict=False):
            sink.write(f.bgr)
    return dst


def _videos(tmp: Path) -> list[tuple[Path, float, int]]:
    from tracking.video import VideoReader

    clips = SHARED / "data" / "videos"
    videos = [_as_video(SHARED / "data" / "mot" / "TUD-Campus", tmp), clips / "car-detection.mp4",
              _cut(clips / "one-by-one-person-detection.mp4", tmp / "one-by-one-400.mp4", 400)]
    out = []
    for v in videos:
        with VideoReader(v) as r:
            out.append((v, r.info.fps, sum(1 for _ in r.frames(pixels=lambda i: False))))
    return out


def run(model: str, repeat: int, overrides: list[str], strides: list[int], json_path: Path | None) -> int:
    print(_cpu_line(), flush=True)
    seed = SHARED / "bench" / "seed_pipeline.py"
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="vidtrack-rate-") as tmp_s:
        tmp = Path(tmp_s)
        for video, fps, frames in _videos(tmp):
            naive, naive_cpu = min(_timed_cpu([sys.executable, str(seed), model, str(video), str(tmp / "naive.mp4")],
                                              tmp) for _ in range(repeat))
            results.append({"video": video.name, "fps": fps, "frames": frames, "contender": "naive",
                            "seconds": naive, "cpu_seconds": naive_cpu})
            print(f"{video.name} ({frames} frames at {fps:g} fps): naive {naive:.1f} s ({frames / naive:.1f} "
                  f"frames/s), {naive_cpu:.1f} CPU s", flush=True)
            for k in strides:
                sets = [*overrides, f"detector.max_fps={fps / k:.6g}"] if k > 1 else list(overrides)
                s, cpu = min(_timed_cpu(_track_cmd(video, tmp / f"vt{k}", model, sets), tmp) for _ in range(repeat))
                results.append({"video": video.name, "fps": fps, "frames": frames, "contender": f"vidtrack 1/{k}",
                                "max_fps": fps / k if k > 1 else 0.0, "seconds": s, "cpu_seconds": cpu})
                print(f"{video.name}: vidtrack track, detected at 1/{k} of {fps:g} fps: {s:.1f} s "
                      f"({frames / s:.1f} frames/s) = {naive / s:.2f}x naive; {cpu:.1f} CPU s = "
                      f"{naive_cpu / cpu:.2f}x naive", flush=True)
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(results, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.rate_bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=str(SHARED / "models" / "yolov8n.pt"))
    p.add_argument("--repeat", type=int, default=1, help="runs of each contender; the fastest is kept")
    p.add_argument("--strides", default="1,2,3,4", help="detect every k-th frame, for each k")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    p.add_argument("--json", type=Path)
    a = p.parse_args(argv)
    return run(str(Path(a.model).resolve()), a.repeat, a.overrides, [int(k) for k in a.strides.split(",")],
               a.json.resolve() if a.json else None)


if __name__ == "__main__":
    sys.exit(main())
