"""`vidtrack eval SEQ...`: track each MOTChallenge sequence and score the online tracker and the
refined records with TrackEval; `--sweep` scores every combination of tracking parameters
from one detection pass (jobs/eval/sweep.py)."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import tempfile
from pathlib import Path
from typing import Any

from jobs.exits import EXIT_OK

log = logging.getLogger("vidtrack." + __name__)


def add_eval_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("sequences", type=Path, nargs="+", help="sequence folders (img1/ or a video, gt/, seqinfo.ini)")
    p.add_argument("--detections", choices=("detector", "public"), default="detector",
                   help="'public' uses each sequence's det/det.txt instead of the detector")
    p.add_argument("--all-boxes", action="store_true",
                   help="also score predicted (unmatched) boxes; default scores boxes matched in their frame")
    p.add_argument("--out", type=Path, help="keep outputs here (default: a temporary folder)")
    p.add_argument("--sweep", action="append", default=[], metavar="SECTION.KEY=V1,V2,...",
                   help="score every combination of these tracker/refine/output values, detecting once "
                        "(repeatable; e.g. --sweep tracker.max_age_s=0.5,1,2)")
    p.add_argument("--sweep-out", type=Path, help="also write the sweep's table here (.csv or .parquet)")


def main(args: argparse.Namespace) -> int:
    from jobs.config import load_config
    from tracking.mot import MotSequence
    from tracking.pipeline import Models

    cfg = load_config(args.config, args.overrides)
    if not cfg.detector.classes:  # MOTChallenge scores pedestrians
        cfg = dataclasses.replace(cfg, detector=dataclasses.replace(cfg.detector, classes=("person",)))
    sequences = [MotSequence.open(s) for s in args.sequences]
    if args.sweep:
        from jobs.eval.sweep import parse_sweeps

        parse_sweeps(args.sweep)  # a bad sweep fails before the models load
    models = Models.load(cfg)
    params_id = cfg.params_id(models.detector.model_sha256, models.embedder.reid_sha256)
    if args.sweep:
        return _eval_sweep(args, cfg, sequences, models, params_id)
    before, after = _score(args, cfg, sequences, models, params_id)
    print(f"{'':<24} {'online tracker (before refinement)':<52} | refined (published records)")
    for name, sc in after.items():
        print(f"{name:<24} {before[name].short():<52} | {sc.short()}")
    return EXIT_OK


def _score(args: argparse.Namespace, cfg: Any, sequences: list[Any], models: Any,
           params_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """TrackEval scores per sequence of the online tracker and of the refined records."""
    from tracking.mot import evaluate_many, tracks_to_mot
    from tracking.pipeline import VideoOutputs, process_video

    with tempfile.TemporaryDirectory(prefix="vidtrack-eval-") as tmp:
        out = args.out or Path(tmp)
        online, refined = {}, {}
        for seq in sequences:
            detect = seq.public_detect_fn() if args.detections == "public" else None
            online_tracks = out / f"{seq.name}.online.tracks.parquet"
            outputs = dataclasses.replace(VideoOutputs.in_dir(out, seq.name, annotated=cfg.output.annotated_video),
                                          online_tracks=online_tracks)
            s = process_video(seq.source, outputs, cfg, models, video_id=seq.name, params_id=params_id,
                              detect=detect)
            refined[seq.name], online[seq.name] = out / f"{seq.name}.mot.txt", out / f"{seq.name}.online.mot.txt"
            tracks_to_mot(outputs.tracks, refined[seq.name], matched_only=not args.all_boxes)
            tracks_to_mot(online_tracks, online[seq.name], matched_only=not args.all_boxes)
            log.info("%s: %d frames in %.1f s, stages %s, tracker %s, refine %s", seq.name, s.frames,
                     s.wall_seconds, s.stage_seconds, s.tracker_frames, s.refine)
        scores = evaluate_many({"online": online, "refined": refined}, sequences)
    return scores["online"], scores["refined"]


def _eval_sweep(args: argparse.Namespace, cfg: Any, sequences: list[Any], models: Any, params_id: str) -> int:
    from jobs.eval.sweep import print_table, run_sweep, write_table

    rows = run_sweep(args, cfg, sequences, models, params_id)
    print_table(rows)
    if args.sweep_out:
        write_table(rows, args.sweep_out)
    return EXIT_OK
