"""Build a dataset's report page and publish it beside the dataset; say whether the published one
is still current (a run that published nothing does not rebuild it)."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from typing import TYPE_CHECKING

from jobs.dataset.layout import DatasetLayout
from jobs.storage import Storage, StorageError

if TYPE_CHECKING:
    from jobs.count.settings import CountSpec
    from jobs.report.data import ReportData

log = logging.getLogger("vidtrack." + __name__)

REPORT_NAME = "report.html"
STALE_PARTIAL_S = 600.0  # a temporary file this old beside the dataset is an earlier writer's leftover


def build_report(storage: Storage, params_id: str, counts: CountSpec | None = None) -> bytes:
    """The report page for the dataset `<storage>/<params_id>/`, as UTF-8 HTML bytes; with
    `counts` (lines and zones), a section of crossings over time per line and direction."""
    from jobs.report.page import render_page

    return render_page(_collect(storage, params_id, counts)).encode("utf-8")


def _collect(storage: Storage, params_id: str, counts: CountSpec | None) -> ReportData:
    from jobs.count.report import line_counts_over_time
    from jobs.report.collect import collect

    data = collect(storage, params_id)
    if counts is not None:
        data.counts = line_counts_over_time(storage, params_id, counts)
    return data


def write_report(storage: Storage, params_id: str, counts: CountSpec | None = None) -> str:
    """Build the report and publish it as `<params_id>/report.html` in one atomic put, then
    `_index/report.json` (what it was built from: the `_done` markers' digest, the counts asked).
    Returns the report's URI (a local path or s3://...). Stale temporary files of earlier writers
    are removed first."""
    from jobs.report.page import render_page

    layout = DatasetLayout(storage, params_id)
    remove_stale_partials(layout)
    data = _collect(storage, params_id, counts)
    page = render_page(data).encode("utf-8")
    key = layout.key(REPORT_NAME)
    storage.put_bytes(key, page)
    built = {"report": REPORT_NAME, "done_digest": data.done_digest, "counts": _counts_id(counts),
             "generated_at": data.generated_at}
    storage.put_bytes(_built_key(layout), (json.dumps(built, indent=2, sort_keys=True) + "\n").encode())
    uri = f"{storage.uri.rstrip('/')}/{key}"
    log.info("report: %s (%.0f KiB)", uri, len(page) / 1024)
    return uri


def current_report(storage: Storage, params_id: str, done_digest: str, counts: CountSpec | None = None) -> str | None:
    """The published report's URI when it was built from these `_done` markers (`done_digest`,
    jobs/dataset/index.py) and these counts, and is still there; None when it must be rebuilt.
    Two requests."""
    layout = DatasetLayout(storage, params_id)
    remove_stale_partials(layout)
    try:
        built = json.loads(storage.read_bytes(_built_key(layout)))
        current = (built.get("done_digest"), built.get("counts")) == (done_digest, _counts_id(counts)) \
            and storage.exists(layout.key(REPORT_NAME))
    except (FileNotFoundError, StorageError, ValueError, AttributeError) as e:  # none yet, or unreadable
        log.debug("report of %s to be rebuilt (%s)", params_id, e)
        return None
    return f"{storage.uri.rstrip('/')}/{layout.key(REPORT_NAME)}" if current else None


def remove_stale_partials(layout: DatasetLayout) -> list[str]:
    """Remove the dataset folder's temporary files (`.<name>.<random>.partial`: report.html,
    config.json) older than STALE_PARTIAL_S, left by a writer that died or failed; younger ones may
    be a concurrent writer's. Only local folders have them (S3 puts are atomic). Returns their names."""
    folder = layout.storage.local_path(layout.params_id)
    if folder is None or not folder.is_dir():
        return []
    removed, cutoff = [], time.time() - STALE_PARTIAL_S
    for path in folder.glob(".*.partial"):
        try:
            if path.is_file() and path.stat().st_mtime < cutoff:
                path.unlink()
                removed.append(path.name)
        except FileNotFoundError:  # another run removed it first
            continue
    if removed:
        log.info("removed %d stale temporary files of earlier writers in %s: %s", len(removed), folder,
                 ", ".join(sorted(removed)))
    return removed


def _counts_id(counts: CountSpec | None) -> str:
    return "" if counts is None else hashlib.sha256(repr(counts).encode()).hexdigest()[:16]


def _built_key(layout: DatasetLayout) -> str:
    return layout.key("_index", "report.json")
