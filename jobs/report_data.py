"""What the report's parts share: the shapes of its sections, its constants, and how to reach
tracks and annotated videos on either storage. jobs/report.py collects, jobs/report_queries.py
queries, jobs/report_html.py renders, jobs/report_sheet.py cuts the contact sheet; all of them
import from here and none of them from each other's callers."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from jobs.layout import DatasetLayout
from jobs.storage import LocalStorage, S3Storage

SHORT_TRACK_S = 1.0  # a track seen for less than this many seconds is "short" (its share per video: ID churn)
MAX_TABLE_ROWS = 200  # rows per table on the page; the rest is counted and the SQL to list it shown
STAGE_ORDER = ("fetch", "decode", "detect", "embed", "track", "write", "encode", "publish")
STATUS_ORDER = ("ok", "failed", "lost", "skipped")


class ReportError(RuntimeError):
    pass


@dataclass
class Section:
    """Query results for one part of the page: small, already aggregated or capped."""

    tables: dict[str, tuple[list[str], list[tuple[Any, ...]]]] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)


@dataclass
class ReportData:
    params_id: str
    dataset_uri: str
    generated_at: str
    config: dict[str, Any]
    summary: dict[str, Any]
    history: Section
    failures: Section
    throughput: Section
    tracked: Section
    sheet: list[dict[str, Any]]


def s3_tracks_dataset(storage: S3Storage, keys: list[str]) -> Any:
    """A pyarrow dataset over track files on S3 (DuckDB scans it with projection and filter
    pushdown). Credentials: the AWS SDK's default chain, as boto3's."""
    import pyarrow.dataset as ds
    from pyarrow import fs

    region = storage.client.meta.region_name or "us-east-1"
    # an S3-compatible server: --s3-endpoint-url, or boto3's own AWS_ENDPOINT_URL(_S3)
    endpoint = storage.endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        scheme, _, host = endpoint.partition("://")
        s3fs = fs.S3FileSystem(endpoint_override=host, scheme=scheme, region=region)
    else:
        s3fs = fs.S3FileSystem(region=fs.resolve_s3_region(storage.bucket))
    paths = [f"{storage.bucket}/{storage.prefix}{k}" for k in keys]
    return ds.dataset(paths, filesystem=s3fs, format="parquet")


def video_source(layout: DatasetLayout, video_id: str) -> str | None:
    """Something PyAV opens for the annotated video: a local path, or a presigned S3 URL
    (seeks become range requests; nothing is downloaded whole). None when there is none."""
    key = layout.video(video_id)
    if not layout.storage.exists(key):
        return None
    if isinstance(layout.storage, LocalStorage):
        return str(layout.storage.root / key)
    s = layout.storage
    if not isinstance(s, S3Storage):
        raise ReportError(f"{s.uri}: annotated videos on this storage cannot be opened")
    url: str = s.client.generate_presigned_url("get_object", Params={"Bucket": s.bucket, "Key": s.prefix + key},
                                               ExpiresIn=900)
    return url
