"""Build a dataset's report page and publish it beside the dataset."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from jobs.dataset.layout import DatasetLayout
from jobs.storage import Storage

if TYPE_CHECKING:
    from jobs.count.settings import CountSpec

log = logging.getLogger("vidtrack." + __name__)

REPORT_NAME = "report.html"


def build_report(storage: Storage, params_id: str, counts: CountSpec | None = None) -> bytes:
    """The report page for the dataset `<storage>/<params_id>/`, as UTF-8 HTML bytes; with
    `counts` (lines and zones), a section of crossings over time per line and direction."""
    from jobs.count.report import line_counts_over_time
    from jobs.report.collect import collect
    from jobs.report.page import render_page

    data = collect(storage, params_id)
    if counts is not None:
        data.counts = line_counts_over_time(storage, params_id, counts)
    return render_page(data).encode("utf-8")


def write_report(storage: Storage, params_id: str, counts: CountSpec | None = None) -> str:
    """Build the report and publish it as `<params_id>/report.html` in one atomic put.
    Returns the report's URI (a local path or s3://...)."""
    page = build_report(storage, params_id, counts)
    key = DatasetLayout(storage, params_id).key(REPORT_NAME)
    storage.put_bytes(key, page)
    uri = f"{storage.uri.rstrip('/')}/{key}"
    log.info("report: %s (%.0f KiB)", uri, len(page) / 1024)
    return uri
