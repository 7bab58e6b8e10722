"""`vidtrack` command line: track one video, evaluate on MOTChallenge, run the archive job, benchmark."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger("vidtrack")

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE = 0, 3, 2


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="TOML file with [detector], [embedder], [tracker], [output] tables")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one parameter, e.g. --set tracker.max_age=60 (repeatable)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vidtrack", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("track", help="track objects in one local video")
    p.add_argument("video", type=Path, help="video file, or a folder of numbered images")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--video-id", help="name for the outputs (default: the file's stem)")
    p.add_argument("--max-frames", type=int, help="stop after this many frames")
    _add_config_args(p)

    p = sub.add_parser("eval", help="score the tracker on MOTChallenge sequences with TrackEval")
    p.add_argument("sequences", type=Path, nargs="+", help="sequence folders (img1/ or a video, gt/, seqinfo.ini)")
    p.add_argument("--detections", choices=("detector", "public"), default="detector",
                   help="'public' uses each sequence's det/det.txt instead of the detector")
    p.add_argument("--all-boxes", action="store_true",
                   help="also score predicted (unmatched) boxes; default scores boxes matched in their frame")
    p.add_argument("--out", type=Path, help="keep outputs here (default: a temporary folder)")
    _add_config_args(p)

    from jobs.run import add_run_args  # the archive job's own arguments live with it

    add_run_args(sub.add_parser("run", help="run the Ray job over an archive (S3 prefix or local folder)"))

    from bench.run import add_bench_args

    add_bench_args(sub.add_parser("bench", help="benchmark vidtrack against the naive pipeline"))
    return parser


def cmd_track(args: argparse.Namespace) -> int:
    from jobs.config import load_config
    from tracking.pipeline import Models, VideoOutputs, process_video

    cfg = load_config(args.config, args.overrides)
    models = Models.load(cfg)
    params_id = cfg.params_id(models.detector.model_sha256)
    video_id = args.video_id or args.video.stem
    outputs = VideoOutputs.in_dir(args.out, video_id, annotated=cfg.output.annotated_video)
    summary = process_video(args.video, outputs, cfg, models, video_id=video_id, params_id=params_id,
                            max_frames=args.max_frames)
    print(json.dumps(summary.to_dict(), indent=2))
    return EXIT_OK


def cmd_eval(args: argparse.Namespace) -> int:
    from jobs.config import load_config
    from tracking.mot import MotSequence, evaluate, tracks_to_mot
    from tracking.pipeline import Models, VideoOutputs, process_video

    cfg = load_config(args.config, args.overrides)
    if not cfg.detector.classes:  # MOTChallenge scores pedestrians
        cfg = dataclasses.replace(cfg, detector=dataclasses.replace(cfg.detector, classes=("person",)))
    sequences = [MotSequence.open(s) for s in args.sequences]
    models = Models.load(cfg)
    params_id = cfg.params_id(models.detector.model_sha256)
    with tempfile.TemporaryDirectory(prefix="vidtrack-eval-") as tmp:
        out = args.out or Path(tmp)
        results = {}
        for seq in sequences:
            detect = seq.public_detect_fn() if args.detections == "public" else None
            outputs = VideoOutputs.in_dir(out, seq.name, annotated=cfg.output.annotated_video)
            s = process_video(seq.source, outputs, cfg, models, video_id=seq.name, params_id=params_id,
                              detect=detect)
            results[seq.name] = out / f"{seq.name}.mot.txt"
            tracks_to_mot(outputs.tracks, results[seq.name], matched_only=not args.all_boxes)
            log.info("%s: %d frames in %.1f s, stages %s", seq.name, s.frames, s.wall_seconds, s.stage_seconds)
        scores = evaluate(results, sequences)
    for name, sc in scores.items():
        print(sc.row(name))
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from tracking.config import ConfigError
    from tracking.detector import ModelError
    from tracking.video import VideoError

    commands = {"track": cmd_track, "eval": cmd_eval, "run": _cmd_run, "bench": _cmd_bench}
    try:
        return commands[args.command](args)
    except (ConfigError, ModelError, VideoError, FileNotFoundError) as e:
        print(f"vidtrack {args.command}: error: {e}", file=sys.stderr)
        return EXIT_USAGE


def _cmd_run(args: argparse.Namespace) -> int:
    from jobs.run import main as run_main

    return run_main(args)


def _cmd_bench(args: argparse.Namespace) -> int:
    from bench.run import main as bench_main

    return bench_main(args)


if __name__ == "__main__":
    sys.exit(main())
