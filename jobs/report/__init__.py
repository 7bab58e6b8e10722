"""The run report: one self-contained HTML page per dataset, computed from the dataset alone.

    vidtrack report out/<params_id>                 -> out/<params_id>/report.html
    vidtrack report s3://bucket/tracks/<params_id>  -> s3://bucket/tracks/<params_id>/report.html
    write_report(storage, params_id)                -> the report's URI (the end of `vidtrack run`)

Sources, all read through DuckDB (track rows never become Python objects; only
aggregates, capped tables and a few sampled boxes do):

    manifest/run_id=*/part-0.parquet   read_parquet(..., union_by_name=true): columns added by
                                       later versions are tolerated, unknown statuses shown as they come
    _done/<id>.json                    complete videos: fps and frame count give the footage duration
                                       (read through the marker index, jobs/dataset/index.py)
    tracks/video_id=<id>/part-0.parquet  only for complete videos, aggregated to one row per track
    videos/<id>.mp4                    the contact sheet's crops (PyAV seeks; S3 through a presigned URL)
    config.json                        parameters, model identity, versions

The parts: build.py (collect, render, publish), collect.py (the dataset into DuckDB), queries.py
(the numbers), sheet.py (the contact sheet), data.py (the shapes they share), page.py (the HTML;
no external reference: styles, the table-sorting script, charts (matplotlib SVG, charts.py) and
thumbnails (base64 JPEG) are inline), command.py (`vidtrack report`).
Tables are capped at MAX_TABLE_ROWS; the page shows what was left out and the SQL to list it.
"""

from jobs.report.build import REPORT_NAME, build_report, current_report, write_report

__all__ = ["REPORT_NAME", "build_report", "current_report", "write_report"]
