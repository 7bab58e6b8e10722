"""`vidtrack report DATASET`: write a dataset's report.html (or --out FILE)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from jobs.exits import EXIT_OK, EXIT_USAGE
from jobs.report.build import build_report, write_report
from jobs.report.data import ReportError
from jobs.storage import StorageError, open_storage
from tracking.atomic import write_bytes_atomic


def split_dataset_uri(uri: str) -> tuple[str, str]:
    """`out/<params_id>` or `s3://bucket/tracks/<params_id>` -> (storage root, params_id)."""
    trimmed = uri.rstrip("/")
    root, _, params_id = trimmed.rpartition("/")
    if not params_id or not root or root in ("s3:", "s3:/"):
        raise StorageError(f"dataset {uri!r}: expected <output>/<params_id> (a local folder or s3://bucket/.../<id>)")
    return (root + "/" if root.startswith("s3://") else root), params_id


def add_report_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset", help="the dataset folder: <output>/<params_id> (local) or s3://bucket/prefix/<params_id>")
    p.add_argument("--out", type=Path, help="write the page here instead of <dataset>/report.html")
    p.add_argument("--s3-endpoint-url", help="S3-compatible endpoint (default: AWS, or $AWS_ENDPOINT_URL)")
    p.add_argument("--counts", type=Path, metavar="FILE.toml",
                   help="lines and zones (vidtrack count's TOML): add a section of line counts over time")


def main(args: argparse.Namespace) -> int:
    from jobs.count.geometry import CountError
    from jobs.count.settings import spec_from_file

    root, params_id = split_dataset_uri(args.dataset)
    storage = open_storage(root, args.s3_endpoint_url)
    try:
        counts = spec_from_file(args.counts) if args.counts else None
        if args.out:
            page = build_report(storage, params_id, counts)
            write_bytes_atomic(args.out, page)
            where = str(args.out)
        else:
            where = write_report(storage, params_id, counts)
    except (ReportError, CountError) as e:
        print(f"vidtrack report: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    print(f"report: {where}")
    return EXIT_OK
