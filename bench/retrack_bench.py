"""Re-tracking at tracking cost: whole `vidtrack run` processes on the same archive, and
`vidtrack eval --sweep` against a plain evaluation, one line each with the ratio.

    python -m bench.retrack_bench [--frames 400] [--sequence ../shared/data/mot/TUD-Campus]
    vidtrack-bench --retrack

The archive: the shared clips cut to their first `--frames` frames (car-detection is 377, the
one-by-one clip 400). Lines (each a separate process, start-up included, in one invocation):
  records only    the archive processed in full with a tracker change (no annotated video), then
                  the same kind of change twice on an output whose detections stage exists
                  (a few cached frames: re-tracked in the driver's process, without Ray)
  annotated       the same with annotated videos (re-tracking decodes to draw)
  eval / eval --sweep 3x3  TUD-Campus: one plain evaluation vs 9 tracker combinations
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.rate_bench import _cut
from bench.run import REPO, SHARED, _cpu_line


def _run(args: list[str]) -> tuple[float, float]:
    """Seconds and peak resident MiB of one `python -m jobs` process."""
    t = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "jobs", *args], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"vidtrack {' '.join(args[:1])} failed with exit {proc.returncode}: {' '.join(args)}")
    return time.perf_counter() - t, usage.ru_maxrss / 1024


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.retrack_bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--videos", type=Path, default=SHARED / "data" / "videos")
    p.add_argument("--frames", type=int, default=400, help="each video cut to its first FRAMES frames")
    p.add_argument("--sequence", type=Path, default=SHARED / "data" / "mot" / "TUD-Campus")
    p.add_argument("--model", type=Path, default=SHARED / "models" / "yolov8n.pt")
    a = p.parse_args(argv)
    os.environ.setdefault("VIDTRACK_MODELS", str(SHARED / "models" / "reid"))
    model = ["--set", f"detector.model={a.model.resolve()}"]
    with tempfile.TemporaryDirectory(prefix="vidtrack-retrack-bench-") as tmp:
        out, archive = Path(tmp), Path(tmp) / "in"
        archive.mkdir()
        for v in sorted(a.videos.glob("*.mp4")):
            _cut(v, archive / v.name, a.frames)
        base = ["run", "--input", str(archive), "--no-progress", *model]  # each run writes its report
        _run([*base, "--output", str(out / "cache")])  # last night's run: leaves the detections stage
        for annotated in ("false", "true"):
            _retrack_line(base, out, annotated, a.frames)
        ev = ["eval", str(a.sequence.resolve()), *model]
        plain, _ = _run(ev)
        sweep, _ = _run([*ev, "--sweep", "tracker.max_age_s=0.5,1,2", "--sweep", "refine.stitch_max_gap_s=1,2,4"])
        print(f"eval: {plain:.1f} s | eval --sweep (9 combinations): {sweep:.1f} s = {sweep / plain:.2f} evals")
    return 0


def _retrack_line(base: list[str], out: Path, annotated: str, frames: int) -> None:
    """One full run and two re-tracking runs with tracker changes (new parameters each time)."""
    setting = ["--set", f"output.annotated_video={annotated}"]
    full, full_mib = _run([*base, *setting, "--set", "tracker.max_age_s=1.0", "--output", str(out / "full"),
                           "--no-detections"])
    re = [_run([*base, *setting, "--set", f"tracker.max_age_s={age}", "--output", str(out / "cache")])
          for age in ((1.0, 1.1) if annotated == "true" else (1.2, 1.3))]
    label = "annotated" if annotated == "true" else "records only"
    secs = " / ".join(f"{s:.1f}" for s, _ in re)
    worst = max(s for s, _ in re)
    print(f"{label} (first {frames} frames of each clip): full run {full:.1f} s, {full_mib:.0f} MiB | re-track "
          f"from cached detections: {secs} s, {max(m for _, m in re):.0f} MiB | {full / worst:.1f}x (slower "
          "re-track)", flush=True)
    shutil.rmtree(out / "full", ignore_errors=True)

if __name__ == "__main__":
    print(_cpu_line(), flush=True)  # vidtrack-bench --retrack prints it before calling main
    sys.exit(main())
