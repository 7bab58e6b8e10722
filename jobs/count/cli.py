"""`vidtrack count DATASET`: line crossings and zone counts from a dataset's track tables.

    vidtrack count out/<params_id> --line door=100,400,600,400 --bucket 1h
    vidtrack count s3://bucket/tracks/<params_id> --config cameras.toml --class person --json
    vidtrack count out/<params_id> --line door=100,400,600,400 --preview door.png

Bad input (a line outside the frame, a zero-length line, a zone of fewer than 3 points or
crossing itself, an unknown class, a path that is not a dataset) is one line on stderr and exit
code 2, with nothing written.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from jobs.count.geometry import CountError, parse_line, parse_zone
from jobs.count.settings import ANCHORS, HYSTERESIS_PX, Clock, CountSpec, load_toml, parse_bucket, parse_time

EXIT_OK, EXIT_USAGE = 0, 2


def add_count_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset", help="<output>/<params_id>, a local folder or s3://bucket/prefix/<params_id>")
    p.add_argument("--line", action="append", default=[], metavar="NAME=X1,Y1,X2,Y2",
                   help="a segment in frame pixels; `in` is its right-hand side seen walking from (X1,Y1) to "
                        "(X2,Y2) on the screen (repeatable)")
    p.add_argument("--zone", action="append", default=[], metavar="NAME=X1,Y1,X2,Y2,X3,Y3[,...]",
                   help="a polygon in frame pixels, at least 3 points (repeatable)")
    p.add_argument("--config", type=Path, help="TOML file: [[camera]] key globs with their lines and zones, [clock]")
    p.add_argument("--class", dest="classes", action="append", default=[], help="count only this class (repeatable)")
    p.add_argument("--video", action="append", default=[], metavar="VIDEO_ID", help="only this video (repeatable)")
    p.add_argument("--key", action="append", default=[], metavar="GLOB", help="only videos whose source key matches")
    p.add_argument("--since", help="start of the window: seconds of footage, or a date-time on the wall clock")
    p.add_argument("--until", help="end of the window (excluded), like --since")
    p.add_argument("--bucket", help="count per bucket of this length, e.g. 15min, 1h (default: one total)")
    p.add_argument("--anchor", choices=ANCHORS, help="the point of the box that crosses (default bottom_center)")
    p.add_argument("--hysteresis", type=float, metavar="PX",
                   help=f"pixels past a line or outline before a side changes (default {HYSTERESIS_PX:g})")
    p.add_argument("--clock-pattern", metavar="PATTERN",
                   help="wall-clock start of each video from its source key, e.g. '*/%%Y-%%m-%%d/%%H-%%M.mp4'")
    p.add_argument("--timezone", help="time zone of the times in the keys (default UTC)")
    p.add_argument("--json", action="store_true", help="end with one JSON line of totals")
    p.add_argument("--out", type=Path, help="also write the bucketed counts here (.csv or .parquet)")
    p.add_argument("--preview", type=Path, metavar="FILE.png",
                   help="only draw the lines and zones on a frame of the (first) selected video")
    p.add_argument("--preview-video", help="the source video to take the preview frame from (default: the dataset's "
                                           "annotated video)")
    p.add_argument("--preview-at", type=float, default=0.0, metavar="SECONDS", help="time of the preview frame")
    p.add_argument("--s3-endpoint-url", help="S3-compatible endpoint (default: AWS, or $AWS_ENDPOINT_URL)")


def spec_from_args(args: argparse.Namespace) -> CountSpec:
    """The count the flags (and the --config file) describe; flags win over the file."""
    file: dict[str, Any] = load_toml(args.config) if args.config else {"cameras": (), "clock": None}
    clock = file["clock"]
    if args.clock_pattern:
        clock = Clock(args.clock_pattern, args.timezone or (clock.timezone if clock else "UTC"))
    elif args.timezone and clock:
        clock = Clock(clock.pattern, args.timezone)
    since, wall_since = parse_time(args.since, "--since") if args.since else (None, False)
    until, wall_until = parse_time(args.until, "--until") if args.until else (None, False)
    if args.since and args.until and wall_since != wall_until:
        raise CountError("--since and --until must both be seconds of footage or both date-times")
    bucket = args.bucket or file.get("bucket")
    hysteresis = args.hysteresis if args.hysteresis is not None else file.get("hysteresis_px", HYSTERESIS_PX)
    return CountSpec(
        lines=tuple(parse_line(s) for s in args.line), zones=tuple(parse_zone(s) for s in args.zone),
        cameras=file["cameras"], classes=tuple(dict.fromkeys(args.classes)), videos=tuple(args.video),
        keys=tuple(args.key), since=since, until=until, wall_window=wall_since or wall_until,
        bucket_s=parse_bucket(str(bucket)) if bucket else None,
        anchor=args.anchor or file.get("anchor", "bottom_center"), hysteresis_px=float(hysteresis), clock=clock)


def main(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except CountError as e:
        print(f"vidtrack count: error: {e}", file=sys.stderr)
        return EXIT_USAGE


def _run(args: argparse.Namespace) -> int:
    from jobs.count.engine import compute
    from jobs.count.output import check_out_path, print_table, totals, write_events, write_out
    from jobs.count.source import open_dataset

    check_out_path(args.out)
    if args.preview is not None and args.preview.suffix.lower() != ".png":
        raise CountError(f"--preview {args.preview}: expected a .png file")
    spec = spec_from_args(args)
    layout, config = open_dataset(args.dataset, args.s3_endpoint_url)
    if args.preview is not None:
        return _preview(args, layout, spec)
    run = compute(layout, config, spec)
    where = write_events(run)
    print_table(run, sys.stdout)
    if args.out:
        write_out(run, args.out)
    print(f"events: {where}/events.parquet ({run.rows('select count(*) from events')[0][0]} events, "
          f"{run.rows('select count(*) from visits')[0][0]} zone visits)")
    if args.json:
        print(json.dumps({**totals(run), "events": f"{where}/events.parquet"}))
    return EXIT_OK


def _preview(args: argparse.Namespace, layout: Any, spec: CountSpec) -> int:
    from jobs.count.preview import draw, frame_at, preview_source, write_preview
    from jobs.count.source import select_videos

    spec.check()
    videos = select_videos(layout, spec)
    if not videos:
        raise CountError(f"{args.dataset}: no complete video is selected: nothing to draw on")
    video = videos[0]
    img = frame_at(preview_source(layout, video, args.preview_video), args.preview_at)
    write_preview(args.preview, draw(img, video.lines, video.zones))
    print(f"preview: {args.preview} (video {video.video_id}, {len(video.lines)} lines, {len(video.zones)} zones)")
    return EXIT_OK
