"""For the run report: counts over time per line and direction, from the dataset alone.

    section = line_counts_over_time(storage, params_id, spec)   # spec: CountSpec with lines/zones
    section.header, section.rows     # a table: line, bucket, in, out
    section.series                   # {(line, "in"|"out"): [count per bucket]}, buckets in section.buckets

Nothing is written to the dataset (the events are only published by `vidtrack count`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from jobs.count.engine import compute, line_counts
from jobs.count.output import bucket_label
from jobs.count.settings import CountSpec
from jobs.count.source import read_config
from jobs.dataset.layout import DatasetLayout
from jobs.storage import Storage

DEFAULT_BUCKET_S = 3600.0  # the report's buckets when the spec has none: hours


@dataclass
class LineCountsOverTime:
    clock: str  # "footage" (seconds from each video's start) or "wall" (from the keys' clock pattern)
    bucket_s: float
    buckets: list[str] = field(default_factory=list)
    series: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    header: list[str] = field(default_factory=lambda: ["line", "bucket", "in", "out"])
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    totals: dict[str, dict[str, int]] = field(default_factory=dict)


def line_counts_over_time(storage: Storage, params_id: str, spec: CountSpec) -> LineCountsOverTime:
    """Crossings per line, direction and bucket (the spec's, else hours) over the complete
    videos of `<storage>/<params_id>`. Raises CountError for bad lines, zones or a non-dataset."""
    layout = DatasetLayout(storage, params_id)
    config = read_config(layout)
    if not spec.bucket_s:
        spec = dataclasses.replace(spec, bucket_s=DEFAULT_BUCKET_S)
    run = compute(layout, config, spec)
    counts = line_counts(run)
    starts = sorted({b for _, b, _, _ in counts})
    labels = [bucket_label(run, b) for b in starts]
    names = sorted({li.name for v in run.videos for li in v.lines})
    series = {(n, d): [0] * len(starts) for n in names for d in ("in", "out")}
    for n, b, i, o in counts:
        series[(n, "in")][starts.index(b)] = i
        series[(n, "out")][starts.index(b)] = o
    return LineCountsOverTime(
        clock=run.clock, bucket_s=float(spec.bucket_s or DEFAULT_BUCKET_S), buckets=labels, series=series,
        rows=[(n, bucket_label(run, b), i, o) for n, b, i, o in counts],
        totals={n: {"in": sum(series[(n, "in")]), "out": sum(series[(n, "out")])} for n in names})
