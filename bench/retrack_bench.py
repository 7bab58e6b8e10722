"""Re-tracking at tracking cost: whole `vidtrack run` processes on the same archive, and
`vidtrack eval --sweep` against a plain evaluation, one line each with the ratio.

    python -m bench.retrack_bench [--videos ../shared/data/videos] [--sequence ../shared/data/mot/TUD-Campus]

Lines (each a separate process, start-up included, in one invocation):
  full, records only       the archive processed in full with a tracker change (no annotated video)
  retrack, records only    the same change on a second output whose detections stage exists
  full, annotated / retrack, annotated   the same with annotated videos (re-tracking decodes to draw)
  eval / eval --sweep 3x3  TUD-Campus: one plain evaluation vs 9 tracker combinations
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.run import REPO, SHARED


def _run(args: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "jobs", *args], check=True, cwd=REPO, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.retrack_bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--videos", type=Path, default=SHARED / "data" / "videos")
    p.add_argument("--sequence", type=Path, default=SHARED / "data" / "mot" / "TUD-Campus")
    p.add_argument("--model", type=Path, default=SHARED / "models" / "yolov8n.pt")
    a = p.parse_args(argv)
    model = ["--set", f"detector.model={a.model.resolve()}"]
    change = ["--set", "tracker.max_age_s=1.0"]
    with tempfile.TemporaryDirectory(prefix="vidtrack-retrack-bench-") as tmp:
        out = Path(tmp)
        base = ["run", "--input", str(a.videos.resolve()), "--no-progress", "--no-report", *model]
        _run([*base, "--output", str(out / "cache")])  # last night's run: leaves the detections stage
        for annotated in ("false", "true"):
            setting = ["--set", f"output.annotated_video={annotated}", *change]
            full = _run([*base, *setting, "--output", str(out / f"full-{annotated}"), "--no-detections"])
            re = _run([*base, *setting, "--output", str(out / "cache")])
            label = "annotated" if annotated == "true" else "records only"
            print(f"full run, {label}: {full:.1f} s | re-track from cached detections: {re:.1f} s | "
                  f"{full / re:.1f}x")
            shutil.rmtree(out / f"full-{annotated}", ignore_errors=True)
        ev = ["eval", str(a.sequence.resolve()), *model]
        plain = _run(ev)
        sweep = _run([*ev, "--sweep", "tracker.max_age_s=0.5,1,2", "--sweep", "refine.stitch_max_gap_s=1,2,4"])
        print(f"eval: {plain:.1f} s | eval --sweep (9 combinations): {sweep:.1f} s = {sweep / plain:.2f} evals")
    return 0


if __name__ == "__main__":
    sys.exit(main())
