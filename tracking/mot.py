"""MOTChallenge sequences: public detections in, MOT result files out, and scoring
with TrackEval (HOTA, CLEAR MOT, Identity) through its own MotChallenge2DBox
dataset class, so preprocessing (distractors, zero-marked boxes) is TrackEval's.
"""

from __future__ import annotations

import configparser
import contextlib
import io
import logging
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tracking.boxes import ltwh_to_xyxy, xyxy_to_ltwh
from tracking.detections import Detections
from tracking.video import IMAGE_SUFFIXES, Frame

log = logging.getLogger("vidtrack." + __name__)

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm")


@dataclass(frozen=True)
class MotSequence:
    name: str
    root: Path
    source: Path  # img1/ folder or a video file
    length: int
    benchmark: str  # "MOT15" or "MOT17" (decides TrackEval's preprocessing)

    @classmethod
    def open(cls, seq_dir: str | os.PathLike[str]) -> MotSequence:
        root = Path(seq_dir)
        ini = root / "seqinfo.ini"
        if not (root / "gt" / "gt.txt").exists() or not ini.exists():
            raise FileNotFoundError(f"{root}: not a MOTChallenge sequence (needs gt/gt.txt and seqinfo.ini)")
        cp = configparser.ConfigParser()
        cp.read(ini)
        seq = cp["Sequence"]
        img = root / seq.get("imDir", "img1")
        videos = sorted(p for p in root.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
        if img.is_dir() and any(p.suffix.lower() in IMAGE_SUFFIXES for p in img.iterdir()):
            source = img
        elif videos:
            source = videos[0]
        else:
            raise FileNotFoundError(f"{root}: no {img.name}/ images and no video file")
        benchmark = "MOT17" if root.name.startswith(("MOT17", "MOT20")) else "MOT15"
        return cls(root.name, root, source, int(seq["seqLength"]), benchmark)

    def public_detections(self) -> dict[int, Detections]:
        """det/det.txt as `Detections` keyed by 0-based frame index. Scores are kept
        as published (MOT15's are unnormalised)."""
        path = self.root / "det" / "det.txt"
        rows = np.loadtxt(path, delimiter=",", ndmin=2)
        out: dict[int, Detections] = {}
        for f in np.unique(rows[:, 0]).astype(int):
            r = rows[rows[:, 0] == f]
            xyxy = ltwh_to_xyxy(r[:, 2:6])
            out[f - 1] = Detections.from_arrays(xyxy, r[:, 6], np.zeros(len(r)))
        return out

    def public_detect_fn(self) -> Any:
        dets = self.public_detections()

        def detect(frames: list[Frame]) -> list[Detections]:
            return [dets.get(f.index, Detections.empty()) for f in frames]
        return detect


def tracks_to_mot(tracks_parquet: str | os.PathLike[str], out_txt: str | os.PathLike[str],
                  matched_only: bool = True, class_id: int | None = None) -> int:
    """Write MOTChallenge result rows (frame, id, left, top, width, height, 1, -1, -1, -1),
    1-based frames. `matched_only` leaves out the tracker's motion predictions: it keeps
    detected boxes and the ones refinement interpolated between two detections."""
    t = pq.read_table(tracks_parquet)
    if matched_only:
        t = t.filter(pc.field("box_source") != "predicted" if "box_source" in t.column_names
                     else pc.field("matched"))
    if class_id is not None:
        t = t.filter(pc.field("class_id") == class_id)
    cols = {k: t.column(k).to_numpy() for k in ("frame_index", "track_id", "x1", "y1", "x2", "y2")}
    ltwh = xyxy_to_ltwh(np.column_stack([cols["x1"], cols["y1"], cols["x2"], cols["y2"]]))
    rows = np.column_stack([cols["frame_index"] + 1, cols["track_id"], ltwh])
    with open(out_txt, "w") as f:
        for r in rows:
            f.write(f"{int(r[0])},{int(r[1])},{r[2]:.2f},{r[3]:.2f},{r[4]:.2f},{r[5]:.2f},1,-1,-1,-1\n")
    return len(rows)


@dataclass(frozen=True)
class MotScores:
    hota: float
    mota: float
    idf1: float
    id_switches: int
    gt_ids: int
    tracker_ids: int

    def short(self) -> str:
        return f"HOTA {self.hota:6.2f}  MOTA {self.mota:6.2f}  IDF1 {self.idf1:6.2f}  IDSW {self.id_switches:4d}"

    def row(self, name: str) -> str:
        return (f"{name:<24} HOTA {self.hota:6.2f}  MOTA {self.mota:6.2f}  IDF1 {self.idf1:6.2f}  "
                f"IDSW {self.id_switches:4d}  GT IDs {self.gt_ids:4d}  tracker IDs {self.tracker_ids:4d}")


def evaluate(results: dict[str, Path], sequences: Sequence[MotSequence]) -> dict[str, MotScores]:
    """Score MOT result files (one per sequence name) with TrackEval. Returns scores per
    sequence and under 'COMBINED' for all of them together."""
    return evaluate_many({"vidtrack": results}, sequences)["vidtrack"]


def evaluate_many(results: dict[str, dict[str, Path]], sequences: Sequence[MotSequence]
                  ) -> dict[str, dict[str, MotScores]]:
    """`evaluate` for several result sets at once (tracker name -> sequence -> file), in one
    TrackEval run: the ground truth is read and prepared once (parameter sweeps)."""
    import trackeval

    by_bench = {s.benchmark for s in sequences}
    if len(by_bench) != 1:
        raise ValueError(f"cannot combine sequences of different benchmarks {sorted(by_bench)}")
    with tempfile.TemporaryDirectory(prefix="vidtrack-eval-") as tmp:
        gt_root = Path(tmp, "gt")
        for s in sequences:
            (gt_root / s.name).mkdir(parents=True)
            (gt_root / s.name / "gt").symlink_to((s.root / "gt").resolve())
            (gt_root / s.name / "seqinfo.ini").symlink_to((s.root / "seqinfo.ini").resolve())
        for tracker, files in results.items():
            trk = Path(tmp, "trackers", tracker, "data")
            trk.mkdir(parents=True)
            for s in sequences:
                (trk / f"{s.name}.txt").symlink_to(Path(files[s.name]).resolve())
        dataset_cfg = {
            "GT_FOLDER": str(gt_root), "TRACKERS_FOLDER": str(Path(tmp, "trackers")),
            "TRACKERS_TO_EVAL": list(results), "BENCHMARK": by_bench.pop(), "SKIP_SPLIT_FOL": True,
            "SEQ_INFO": {s.name: s.length for s in sequences}, "CLASSES_TO_EVAL": ["pedestrian"],
            "PRINT_CONFIG": False, "DO_PREPROC": True,
        }
        res, msgs = _run_trackeval(trackeval, dataset_cfg)
    return {tracker: _scores(res["MotChallenge2DBox"][tracker], msgs["MotChallenge2DBox"][tracker])
            for tracker in results}


def _run_trackeval(trackeval: Any, dataset_cfg: dict[str, Any]) -> tuple[Any, Any]:
    eval_cfg = {"USE_PARALLEL": False, "PRINT_RESULTS": False, "PRINT_CONFIG": False,
                "TIME_PROGRESS": False, "OUTPUT_SUMMARY": False, "OUTPUT_DETAILED": False,
                "PLOT_CURVES": False, "OUTPUT_EMPTY_CLASSES": False, "DISPLAY_LESS_PROGRESS": True,
                "BREAK_ON_ERROR": True, "RETURN_ON_ERROR": False, "LOG_ON_ERROR": None}
    evaluator = trackeval.Evaluator(eval_cfg)
    metrics = [trackeval.metrics.HOTA({"PRINT_CONFIG": False}), trackeval.metrics.CLEAR({"PRINT_CONFIG": False}),
               trackeval.metrics.Identity({"PRINT_CONFIG": False})]
    with contextlib.redirect_stdout(io.StringIO()) as out:  # TrackEval prints progress to stdout
        res, msgs = evaluator.evaluate([trackeval.datasets.MotChallenge2DBox(dataset_cfg)], metrics)
    log.debug("trackeval: %s", out.getvalue())
    return res, msgs


def _scores(per_seq: dict[str, Any], status: str) -> dict[str, MotScores]:
    if status != "Success":
        raise RuntimeError(f"TrackEval failed: {status}")
    scores = {}
    for name, r in per_seq.items():
        p = r["pedestrian"]
        scores["COMBINED" if name == "COMBINED_SEQ" else name] = MotScores(
            hota=100 * float(np.mean(p["HOTA"]["HOTA"])), mota=100 * float(p["CLEAR"]["MOTA"]),
            idf1=100 * float(p["Identity"]["IDF1"]), id_switches=int(p["CLEAR"]["IDSW"]),
            gt_ids=int(p["Count"]["GT_IDs"]) if "Count" in p else 0,
            tracker_ids=int(p["Count"]["IDs"]) if "Count" in p else 0)
    return scores
