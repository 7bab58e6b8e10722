"""Tracking scores of the naive pipeline on every shared sequence: `vidtrack-bench --naive-scores`.

The issue's rule is "no shared sequence below the naive pipeline": this gives the naive side of that
comparison. ../shared/bench/seed_pipeline.py (YOLOv8 + deep-sort-realtime, one frame at a time) runs
unmodified, as users run it (its own imgsz, every class, every confirmed track's box as it writes
them, predicted ones included), on each sequence's frames, and its MOT rows are scored against the
sequence's ground truth with the same TrackEval scoring as `vidtrack eval` (tracking.mot). Beside
that, from the same run, the rows `vidtrack eval` would score (person, box matched to a detection in
its frame), recorded by observing the tracker's answers: the like-for-like comparison.

The seed script reads a video with cv2.VideoCapture. A sequence's img1/ JPEGs are encoded losslessly
(FFV1, bgr0) at the frame rate of seqinfo.ini, so the frames it decodes are exactly cv2.imread's, the
frames vidtrack reads from img1/ (an image-sequence pattern goes through FFmpeg's JPEG decoder and
differs by up to 20 levels).
"""

from __future__ import annotations

import configparser
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from tracking.mot import MotScores, MotSequence, evaluate_many

SCOPE = "all classes, confirmed tracks incl. predicted boxes, as seed_pipeline.py writes them"
PERSON_SCOPE = "person boxes matched in their frame only, as vidtrack eval scores"


def shared_sequences(shared: Path) -> list[Path]:
    """Every shared MOTChallenge sequence with ground truth (TUD-Campus, each MOT17-mini one)."""
    mot = shared / "data" / "mot"
    return sorted({p.parent.parent for pattern in ("*/gt/gt.txt", "*/*/gt/gt.txt") for p in mot.glob(pattern)})


def encode_lossless(seq: MotSequence, dst: Path) -> Path:
    """The sequence's frames as an FFV1 (bgr0) Matroska video at seqinfo.ini's frame rate: decodes to
    exactly the BGR arrays cv2.imread gives."""
    import av

    cp = configparser.ConfigParser()
    cp.read(seq.root / "seqinfo.ini")
    fps = Fraction(cp["Sequence"].get("frameRate", "25")).limit_denominator(1001)
    files = sorted(p for p in seq.source.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp"))
    if not files:
        raise FileNotFoundError(f"{seq.source}: no images to encode")
    with av.open(str(dst), "w", format="matroska") as c:
        stream = None
        for i, path in enumerate(files):
            img = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if img is None:
                raise ValueError(f"{path}: cannot read image")
            if stream is None:
                stream = c.add_stream("ffv1", rate=fps)
                stream.height, stream.width = img.shape[:2]
                stream.pix_fmt = "bgr0"
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img, dtype=np.uint8), format="bgr24")
            frame.pts = i
            for packet in stream.encode(frame):
                c.mux(packet)
        assert stream is not None
        for packet in stream.encode(None):
            c.mux(packet)
    return dst


# Runs the seed script unchanged, and beside its own rows records the ones `vidtrack eval` would score
# (person, box matched to a detection in that frame): observing the tracker's answer changes nothing.
_OBSERVER = """import runpy, sys
from deep_sort_realtime.deepsort_tracker import DeepSort
_update, _rows, _frame = DeepSort.update_tracks, open(sys.argv[1], "w"), [0]
def _observed(self, *a, **k):
    tracks = _update(self, *a, **k)
    _frame[0] += 1
    for t in tracks:
        if t.is_confirmed() and t.time_since_update == 0 and t.get_det_class() == "person":
            x1, y1, x2, y2 = [int(v) for v in t.to_ltrb()]
            _rows.write(f"{_frame[0]},{t.track_id},{x1},{y1},{x2 - x1},{y2 - y1},1,-1,-1,-1\\n")
    return tracks
DeepSort.update_tracks = _observed
seed = sys.argv[2]
sys.argv = sys.argv[2:]
g = runpy.run_path(seed, run_name="__main__")
g["tracks_csv"].close()
_rows.close()
"""


def run_seed(seed: Path, model: str, video: Path, out: Path) -> dict[str, Any]:
    """seed_pipeline.py in its own process, unmodified; returns its frame count, seconds, its MOT file
    ("mot") and the person rows matched in their frame ("mot_person")."""
    csv, person, annotated = out / "naive.mot.txt", out / "naive.person.mot.txt", out / "naive.mp4"
    env = {**os.environ, "YOLO_AUTOINSTALL": "false"}
    cmd = [sys.executable, "-c", _OBSERVER, str(person), str(seed), model, str(video), str(annotated), str(10**9),
           str(csv)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=out, env=env, check=False)
    wall = time.perf_counter() - t0
    last = next((ln for ln in reversed(proc.stdout.splitlines()) if ln.startswith("frames=")), None)
    if proc.returncode != 0 or last is None or not csv.exists():
        raise RuntimeError(f"naive pipeline failed on {video} (exit {proc.returncode}):\n"
                           f"{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    kv = dict(item.split("=") for item in last.split())
    return {"frames": int(kv["frames"]), "seconds": float(kv["seconds"]), "process_seconds": wall, "mot": csv,
            "mot_person": person}


def score(results: dict[str, Path], sequences: Iterable[MotSequence]) -> dict[str, MotScores]:
    """TrackEval scores per sequence (tracking.mot.evaluate_many, one run per benchmark: MOT15 and
    MOT17 sequences are prepared differently and cannot share a run)."""
    by_bench: dict[str, list[MotSequence]] = {}
    for s in sequences:
        by_bench.setdefault(s.benchmark, []).append(s)
    scores: dict[str, MotScores] = {}
    for seqs in by_bench.values():
        got = evaluate_many({"naive": {s.name: results[s.name] for s in seqs}}, seqs)["naive"]
        scores.update({s.name: got[s.name] for s in seqs})
    return scores


def score_line(name: str, sc: MotScores, person: MotScores) -> str:
    return (f"naive-scores: {name} IDF1 {sc.idf1:.2f} HOTA {sc.hota:.2f} MOTA {sc.mota:.2f} ({SCOPE}; "
            f"{PERSON_SCOPE}: IDF1 {person.idf1:.2f} HOTA {person.hota:.2f} MOTA {person.mota:.2f})")


def naive_scores(seq_dirs: list[Path], model: str, seed: Path, json_path: Path) -> int:
    """Run the seed script on each sequence, print one score line each and write them all to `json_path`
    (its MOT rows beside it, in the folder of the same name)."""
    sequences = [MotSequence.open(d) for d in seq_dirs]
    kept = json_path.with_suffix("")
    kept.mkdir(parents=True, exist_ok=True)
    runs: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="vidtrack-naive-") as tmp_s:
        for seq in sequences:
            out = Path(tmp_s) / seq.name
            out.mkdir()
            r = run_seed(seed, model, encode_lossless(seq, out / f"{seq.name}.mkv"), out)
            for key, suffix in (("mot", ".txt"), ("mot_person", ".person.txt")):
                src, r[key] = r[key], kept / f"{seq.name}{suffix}"
                r[key].write_bytes(src.read_bytes())
            runs[seq.name] = r
    scores = score({n: r["mot"] for n, r in runs.items()}, sequences)
    person = score({n: r["mot_person"] for n, r in runs.items()}, sequences)
    for seq in sequences:
        print(score_line(seq.name, scores[seq.name], person[seq.name]), flush=True)
    doc = {"scope": SCOPE, "person_scope": PERSON_SCOPE, "load_average_at_end": os.getloadavg(),
           "seed": str(seed), "seed_sha256": _sha256(seed), "model": model,
           "model_sha256": _sha256(Path(model)) if Path(model).is_file() else None,
           "sequences": {s.name: {"path": str(s.root), "benchmark": s.benchmark, **vars(scores[s.name]),
                                  "person_matched": vars(person[s.name]),
                                  **{k: str(v) if isinstance(v, Path) else v for k, v in runs[s.name].items()}}
                         for s in sequences}}
    json_path.write_text(json.dumps(doc, indent=2))
    print(f"naive-scores: written to {json_path}")
    return 0


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
