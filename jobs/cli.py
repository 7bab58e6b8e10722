"""`vidtrack` command line: track one video, evaluate on MOTChallenge (jobs/eval/), run the archive job
(jobs/run/), write a dataset's report (jobs/report/)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

from jobs.exits import EXIT_INCOMPLETE, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from jobs.plan import DEFAULT_INCLUDE

log = logging.getLogger("vidtrack.jobs.cli")


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="TOML file with [detector], [embedder], [tracker], [output] tables")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one parameter, e.g. --set tracker.max_age=60 (repeatable)")


def _positive_int(s: str) -> int:
    v = int(s)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {v}")
    return v


def _positive_float(s: str) -> float:
    v = float(s)
    if not v > 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {s}")
    return v


def _non_negative_float(s: str) -> float:
    v = float(s)
    if not v >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {s}")
    return v


def _utc_datetime(s: str) -> datetime:
    try:
        d = datetime.fromisoformat(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{s!r} is not a date or date-time (e.g. 2026-11-21 or "
                                         "2026-11-21T18:00:00+01:00)") from None
    return d if d.tzinfo else d.replace(tzinfo=UTC)


def add_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input", required=True, help="s3://bucket/prefix/ or a local folder of videos")
    p.add_argument("--output", required=True, help="s3://bucket/prefix/ or a local folder (never under --input)")
    _add_config_args(p)
    p.add_argument("--actors", type=_positive_int, help="actor count (default: one per GPU slot, else per CPU share)")
    p.add_argument("--cpus-per-actor", type=_positive_float, default=1.0)
    p.add_argument("--gpus-per-actor", type=_non_negative_float, default=0.0, help="fractional allowed, e.g. 0.5")
    p.add_argument("--address", help="Ray cluster address ('auto' inside a cluster); default: embedded local Ray")
    p.add_argument("--include", action="append", help=f"glob on keys, case-insensitive (repeatable; default "
                                                      f"{' '.join(DEFAULT_INCLUDE)})")
    p.add_argument("--exclude", action="append", default=[], help="glob on keys to skip (repeatable)")
    p.add_argument("--modified-since", type=_utc_datetime, help="only objects modified at or after this (UTC)")
    p.add_argument("--settle-seconds", type=_non_negative_float, default=0.0,
                   help="leave objects modified this recently for the next run (files still being written)")
    p.add_argument("--max-attempts", type=_positive_int, default=3,
                   help="attempts per video for infrastructure errors and actor deaths")
    p.add_argument("--retry-failed", action="store_true",
                   help="also retry videos that failed in earlier runs and have not changed since")
    p.add_argument("--start-timeout", type=_positive_float, default=300.0,
                   help="seconds to wait for the first actor (and for replacements) before giving up")
    p.add_argument("--grace-seconds", type=_non_negative_float, default=30.0,
                   help="on SIGINT/SIGTERM, how long videos in flight may take to finish")
    p.add_argument("--s3-endpoint-url", help="S3-compatible endpoint (default: AWS, or $AWS_ENDPOINT_URL)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-report", action="store_true", help="do not write <dataset>/report.html at the end")
    p.add_argument("--counts", type=Path, metavar="FILE.toml",
                   help="lines and zones (vidtrack count's TOML): the report gets their counts over time")
    p.add_argument("--no-detections", action="store_true",
                   help="neither keep the detections stage nor re-track from it (always detect)")


class _Parser(argparse.ArgumentParser):
    """Usage errors are one line on stderr and exit code 2 (argparse adds the usage block)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


VERBOSE_HELP = ("debug logging (-v: vidtrack and Ray; -vv: also botocore's and urllib3's request logs, "
                "credentials redacted); before or after the command")


def _verbosity(p: argparse.ArgumentParser, dest: str = "verbose") -> argparse.ArgumentParser:
    """-v/--verbose on `p`: `vidtrack -v run ...` and `vidtrack run ... -v` both count."""
    p.add_argument("-v", "--verbose", dest=dest, action="count", default=0, help=VERBOSE_HELP)
    return p


class _Sub:
    """The subcommand parsers, each with its own -v (counted apart from the main parser's)."""

    def __init__(self, sub: Any) -> None:
        self.sub = sub

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        return _verbosity(self.sub.add_parser(name, **kwargs), "verbose_after")


def verbosity(args: argparse.Namespace) -> int:
    return int(args.verbose) + int(getattr(args, "verbose_after", 0))


def build_parser() -> argparse.ArgumentParser:
    parser = _verbosity(_Parser(prog="vidtrack", description=__doc__))
    sub = _Sub(parser.add_subparsers(dest="command", required=True))

    p = sub.add_parser("track", help="track objects in one local video")
    p.add_argument("video", type=Path, help="video file, or a folder of numbered images")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--video-id", help="name for the outputs (default: the file's stem)")
    p.add_argument("--max-frames", type=int, help="stop after this many frames")
    _add_config_args(p)

    from jobs.eval.command import add_eval_args

    p = sub.add_parser("eval", help="score the tracker on MOTChallenge sequences with TrackEval")
    add_eval_args(p)
    _add_config_args(p)

    add_run_args(sub.add_parser("run", help="run the Ray job over an archive (S3 prefix or local folder)"))

    from jobs.report.command import add_report_args

    add_report_args(sub.add_parser("report", help="write a dataset's report.html (one self-contained page)"))
    from jobs.count.cli import add_count_args

    add_count_args(sub.add_parser("count", help="count line crossings and zone visits from a dataset's tracks"))
    return parser


def cmd_track(args: argparse.Namespace) -> int:
    from jobs.config import load_config
    from tracking.pipeline import Models, VideoOutputs, process_video

    cfg = load_config(args.config, args.overrides)
    models = Models.load(cfg)
    params_id = cfg.params_id(models.detector.model_sha256, models.embedder.reid_sha256)
    video_id = args.video_id or args.video.stem
    outputs = VideoOutputs.in_dir(args.out, video_id, annotated=cfg.output.annotated_video)
    summary = process_video(args.video, outputs, cfg, models, video_id=video_id, params_id=params_id,
                            max_frames=args.max_frames)
    print(json.dumps(summary.to_dict(), indent=2))
    return EXIT_OK


def cmd_eval(args: argparse.Namespace) -> int:
    from jobs.eval.command import main as eval_main

    return eval_main(args)


def _counts(path: Path | None) -> Any:
    """The report's lines and zones, read before anything runs (a bad file is a usage error)."""
    if path is None:
        return None
    from jobs.count.geometry import CountError
    from jobs.count.settings import spec_from_file
    from jobs.exits import UsageError

    try:
        return spec_from_file(path)
    except CountError as e:
        raise UsageError(f"--counts {path}: {e}") from e


def cmd_run(args: argparse.Namespace) -> int:
    from jobs.config import load_config
    from jobs.run import JobSpec, run_job

    spec = JobSpec(
        input=args.input, output=args.output, config=load_config(args.config, args.overrides),
        actors=args.actors, cpus_per_actor=args.cpus_per_actor, gpus_per_actor=args.gpus_per_actor,
        address=args.address, include=args.include or list(DEFAULT_INCLUDE), exclude=args.exclude,
        modified_since=args.modified_since, settle_seconds=args.settle_seconds, max_attempts=args.max_attempts,
        endpoint_url=args.s3_endpoint_url, progress=not args.no_progress, retry_failed=args.retry_failed,
        start_timeout=args.start_timeout, grace_seconds=args.grace_seconds, verbose=verbosity(args) > 0,
        report=not args.no_report, detections=not args.no_detections, counts=_counts(args.counts))
    result = run_job(spec)
    print(result.summary_line())
    if result.report:
        print(f"report: {result.report}")
    print(json.dumps({"run_id": result.run_id, "params_id": result.params_id, "dataset": result.dataset,
                      "ok": result.ok, "failed": result.failed, "failed_before": result.failed_before,
                      "outstanding": result.outstanding, "skipped": result.skipped, "manifest": result.manifest,
                      "report": result.report,
                      "exit_code": result.exit_code}))
    return result.exit_code


def _setup_logging(verbose: int) -> None:
    """Every record redacted and escaped (jobs/logsafe.py). botocore's, s3transfer's and urllib3's
    debug logs (every request's headers and signature) only at -vv: they are the one place
    credentials would pass through a log, redaction is the guard, and -v is for the job."""
    from jobs.logsafe import install

    install()
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not verbose:  # third-party chatter (exports, Ray's start-up) stays out of the operator's terminal
        for name in ("ultralytics", "ray", "openvino"):
            logging.getLogger(name).setLevel(logging.WARNING)
    if verbose < 2:
        for name in ("urllib3", "botocore", "boto3", "s3transfer"):
            logging.getLogger(name).setLevel(logging.WARNING if not verbose else logging.INFO)


def cmd_report(args: argparse.Namespace) -> int:
    from jobs.report.command import main as report_main

    return report_main(args)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(verbosity(args))
    from jobs.count.cli import main as cmd_count
    from jobs.exits import StartError, UsageError
    from jobs.logsafe import redact, shown
    from jobs.storage import StorageError
    from tracking.config import ConfigError
    from tracking.modelref import ModelError
    from tracking.video import VideoError

    commands = {"track": cmd_track, "eval": cmd_eval, "run": cmd_run, "report": cmd_report, "count": cmd_count}
    try:
        return commands[args.command](args)
    except (ConfigError, ModelError, VideoError, FileNotFoundError, UsageError, StorageError) as e:
        print(f"vidtrack {args.command}: error: {shown(redact(str(e)))}", file=sys.stderr)
        return EXIT_USAGE
    except StartError as e:
        print(f"vidtrack {args.command}: error: {shown(redact(str(e)))}", file=sys.stderr)
        return EXIT_USAGE if e.usage else EXIT_INCOMPLETE
    except KeyboardInterrupt:
        print(f"vidtrack {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
