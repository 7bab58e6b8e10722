"""What the report's parts share: the shapes of its sections, its constants, and how to reach
annotated videos on any storage. collect.py collects, queries.py queries, page.py renders,
sheet.py cuts the contact sheet; all of them import from here and none of them from each
other's callers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from jobs.dataset.layout import DatasetLayout
from jobs.dataset.manifest import Status

SHORT_TRACK_S = 1.0  # a track seen for less than this many seconds is "short" (its share per video: ID churn)
MAX_TABLE_ROWS = 200  # rows per table on the page; the rest is counted and the SQL to list it shown
STAGE_ORDER = ("fetch", "decode", "detect", "embed", "track", "write", "encode", "publish")
STATUS_ORDER = tuple(s.value for s in Status)  # the manifest's statuses, in their documented order


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
    counts: Any = None  # jobs.count.report.LineCountsOverTime when lines/zones were given
    done_digest: str = ""  # the `_done` markers it was built from (jobs/dataset/index.py)


def video_source(layout: DatasetLayout, video_id: str) -> str | None:
    """Something PyAV opens for the annotated video: a local path, or a presigned S3 URL
    (seeks become range requests; nothing is downloaded whole). None when there is none."""
    key = layout.video(video_id)
    if not layout.storage.exists(key):
        return None
    return layout.storage.reader_url(key)
