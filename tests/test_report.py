"""The run report (jobs/report/): built from a real run of the job on the shared videos with
one corrupt file among them, opened in a real headless Chromium, and built over a synthetic
dataset whose manifests carry a column and a status the report does not know."""

from __future__ import annotations

import base64
import html
import json
import re
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import cv2
import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bench.report_bench import make_synthetic_dataset
from jobs.cli import main
from jobs.dataset.layout import DatasetLayout
from jobs.report import REPORT_NAME, build_report, write_report
from jobs.report.data import MAX_TABLE_ROWS
from jobs.report.sheet import THUMB_HEIGHT
from jobs.storage import LocalStorage
from tests.chromium_cdp import Chromium, chromium_path
from tests.conftest import JOB_OVERRIDES, S3_CANARY, make_archive_clips

CHARTS = {"video-fps", "node-fps", "stages-run", "stages-node", "tracks-class", "dwell", "tracks-hour", "short-share"}


class Tables(HTMLParser):
    """Every <table> of a page as rows of cell texts, with the id of the section it is in."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[tuple[str, list[list[str]]]] = []
        self.section = ""
        self._row: list[str] | None = None
        self._cell: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "section":
            self.section = dict(attrs).get("id") or ""
        elif tag == "table":
            self.tables.append((self.section, []))
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = ""

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._row is not None and self._cell is not None:
            self._row.append(self._cell)
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.tables[-1][1].append(self._row)
            self._row = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell += data


def tables_in(page: str, section: str) -> list[list[list[str]]]:
    parser = Tables()
    parser.feed(page)
    return [rows for sec, rows in parser.tables if sec == section]


def summary_of(page: str) -> dict:
    m = re.search(r'<script type="application/json" id="vidtrack-summary">(.*?)</script>', page, re.S)
    assert m, "the page has no machine-readable summary"
    return json.loads(m.group(1))


@pytest.fixture(scope="module")
def real_run(tmp_path_factory: pytest.TempPathFactory, ray_local: None) -> tuple[Path, str]:
    """Three real clips and one truncated (corrupt) video through the real job on a local Ray.
    Returns (dataset folder, run_id)."""
    from jobs.config import load_config
    from jobs.run import JobSpec, run_job

    root = tmp_path_factory.mktemp("report-run")
    clips = make_archive_clips(root / "in" / "cams", 3, 16)
    data = clips[1].read_bytes()
    (root / "in" / "corrupt.mp4").write_bytes(data[: len(data) // 3])
    result = run_job(JobSpec(input=str(root / "in"), output=str(root / "out"),
                             config=load_config(None, JOB_OVERRIDES), actors=1, progress=False))
    assert (result.ok, result.failed) == (3, 1)
    return Path(result.dataset), result.run_id


def test_report_of_a_real_run_shows_the_failure_counts_and_parameters(real_run: tuple[Path, str]) -> None:
    dataset, run_id = real_run
    uri = write_report(LocalStorage(dataset.parent), dataset.name)
    assert uri == str(dataset / REPORT_NAME)
    page = (dataset / REPORT_NAME).read_text()
    manifest = f"read_parquet('{dataset}/manifest/*/*.parquet', union_by_name=true)"
    failures = duckdb.connect().execute(f"select error_class, source_key from {manifest} where status = 'failed'"
                                        ).fetchall()
    assert len(failures) == 1 and failures[0][1] == "corrupt.mp4" and failures[0][0]
    error_class = failures[0][0]

    s = summary_of(page)
    assert (s["videos"], s["complete"], s["runs"]) == (4, 3, 1)
    assert s["not_complete_by_status"] == {"failed": 1}
    assert s["latest_run"] == {"run_id": run_id, "videos_by_status": {"ok": 3, "failed": 1}}

    # failures first: the error class groups the corrupt video, with its key
    section = page[page.index('<section id="failures"'):page.index('<section id="runs"')]
    group = re.search(rf'<details class="fail" open data-error-class="{re.escape(error_class)}">(.*?)</details>',
                      section, re.S)
    assert group and "corrupt.mp4" in group.group(1) and "1 video<" in group.group(1)
    # the run history line: 3 ok, 1 failed
    (runs,) = tables_in(page, "runs")
    header, row = runs[0], next(r for r in runs[1:] if run_id in r)
    assert (row[header.index("ok")], row[header.index("failed")]) == ("3", "1")
    # the parameters and the model's identity
    config = json.loads((dataset / "config.json").read_text())
    params = html.unescape(page[page.index('<section id="parameters"'):])
    assert '"imgsz": 320' in params and config["model"]["sha256"] in params and dataset.name in params


def test_contact_sheet_crops_come_from_the_annotated_videos(real_run: tuple[Path, str]) -> None:
    dataset, _ = real_run
    page = build_report(LocalStorage(dataset.parent), dataset.name).decode()
    sheet = page[page.index('<section id="sheet"'):page.index('<section id="parameters"')]
    thumbs = re.findall(r'src="data:image/jpeg;base64,([^"]+)"', sheet)
    assert thumbs, "no crops on the contact sheet"
    for b64 in thumbs:
        img = cv2.imdecode(np.frombuffer(base64.b64decode(b64), np.uint8), cv2.IMREAD_COLOR)
        assert img is not None and img.shape[0] <= THUMB_HEIGHT and img.std() > 5  # a picture, not a blank
    assert re.search(r"<b>track \d+</b> · person", sheet)
    # nothing on the page points anywhere but inside itself
    assert not re.findall(r'(?:src|href)="(?!data:|#)', page)


def test_cli_report_writes_into_the_dataset(real_run: tuple[Path, str], tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    dataset, _ = real_run
    assert main(["report", str(dataset), "--out", str(tmp_path / "r.html")]) == 0
    assert summary_of((tmp_path / "r.html").read_text())["complete"] == 3
    assert main(["report", str(tmp_path / "nope" / "abc")]) == 2
    assert "no config.json" in capsys.readouterr().err


def test_a_second_run_adds_a_history_line_and_keeps_the_failure_details(real_run: tuple[Path, str],
                                                                         tmp_path: Path) -> None:
    """A rerun skips the done videos and repeats the failure as an attempt-0 row; the page
    still shows the failure with its own message, run and node."""
    import shutil

    from jobs.config import load_config
    from jobs.run import JobSpec, run_job

    dataset, first_run = real_run
    out = tmp_path / "out"
    shutil.copytree(dataset.parent, out)  # the module's dataset stays as it was
    second = run_job(JobSpec(input=str(dataset.parent.parent / "in"), output=str(out),
                             config=load_config(None, JOB_OVERRIDES), actors=1, progress=False))
    page = build_report(LocalStorage(out), dataset.name).decode()
    (runs,) = tables_in(page, "runs")
    header = runs[0]
    lines = {r[header.index("run")]: r for r in runs[1:]}
    assert list(lines) == [second.run_id, first_run]  # newest first
    assert [lines[second.run_id][header.index(c)] for c in ("ok", "failed", "skipped")] == ["0", "1", "3"]
    (failure_rows,) = [t for t in tables_in(page, "failures") if t[0][0] == "status"]
    row = dict(zip(failure_rows[0], failure_rows[1], strict=True))
    assert row["key"] == "corrupt.mp4" and row["run"] == first_run and row["node"]
    assert "earlier run" not in row["message"]


def _open(browser: Chromium, page: Path) -> list[str]:
    """Load the page; returns the URLs it requested other than itself and data: URLs."""
    log = browser.open(page.as_uri())
    assert log.exceptions == [] and log.console_errors == [], log
    return [u for u in log.requests if u != page.as_uri() and not u.startswith("data:")]


@pytest.mark.skipif(chromium_path() is None, reason="chromium is not installed (.ci/run installs Debian's)")
def test_report_in_headless_chromium(real_run: tuple[Path, str], tmp_path: Path) -> None:
    dataset, _ = real_run
    page = tmp_path / "report.html"
    page.write_bytes(build_report(LocalStorage(dataset.parent), dataset.name))
    with Chromium(chromium_path() or "", tmp_path / "profile") as browser:
        assert _open(browser, page) == [], "the page fetched something"
        assert browser.evaluate("document.body.dataset.ready") == "1"  # its script ran to the end
        charts = browser.evaluate("""Array.from(document.querySelectorAll('svg.chart')).map(s => {
            const r = s.getBoundingClientRect();
            return [s.dataset.chart, r.width, r.height, s.querySelectorAll('path, use, text').length]; })""")
        assert {c[0] for c in charts} == CHARTS
        assert all(w > 100 and h > 80 and n > 10 for _, w, h, n in charts), charts
        images = browser.evaluate("Array.from(document.images).map(i => [i.complete, i.naturalHeight])")
        assert images and all(ok and h > 0 for ok, h in images)
        # sorting: a click on "frames/s" orders the slowest-videos table by it
        order = browser.evaluate("""(() => {
            const t = Array.from(document.querySelectorAll('#throughput table'))[1];
            const col = Array.from(t.tHead.rows[0].cells).findIndex(c => c.textContent === 'frames/s');
            t.tHead.rows[0].cells[col].click(); t.tHead.rows[0].cells[col].click();
            return Array.from(t.tBodies[0].rows).map(r => Number(r.cells[col].dataset.v)); })()""")
        assert len(order) == 3 and order == sorted(order, reverse=True)
        log = browser.settle()
        assert log.exceptions == [] and log.console_errors == [], log
        shot = browser.screenshot(tmp_path / "report.png")
    print(f"report screenshot: {shot}")
    png = cv2.imread(str(shot))
    assert png is not None and png.shape[0] > 2000 and png.std() > 10


@pytest.mark.skipif(chromium_path() is None, reason="chromium is not installed (.ci/run installs Debian's)")
def test_browser_check_sees_requests_and_script_errors(tmp_path: Path) -> None:
    """The checks above can fail: a page that fetches and throws is caught."""
    page = tmp_path / "bad.html"
    page.write_text('<!doctype html><img src="http://127.0.0.1:9/x.png"><script>no_such_function()</script>')
    with tempfile.TemporaryDirectory() as profile, Chromium(chromium_path() or "", Path(profile)) as browser:
        log = browser.open(page.as_uri())
    assert "http://127.0.0.1:9/x.png" in log.requests
    assert any("no_such_function" in e for e in log.exceptions)


def test_report_tolerates_new_columns_and_statuses_and_caps_tables(tmp_path: Path) -> None:
    storage, params_id = make_synthetic_dataset(tmp_path, 260, tracks_per_video=8, annotated=1)
    newest_manifest = storage.root / DatasetLayout(storage, params_id).manifest("20261103T010000Z-cccccc")
    rows = pq.read_table(newest_manifest).to_pylist()
    retried = next(r for r in rows if r["status"] == "retryable")
    rows.append({**retried, "video_id": "from-a-newer-job", "status": "quarantined"})  # no vidtrack status
    pq.write_table(pa.Table.from_pylist(rows), newest_manifest)
    page = build_report(storage, params_id).decode()
    s = summary_of(page)
    assert (s["runs"], s["videos"]) == (3, 261)
    (runs,) = tables_in(page, "runs")
    assert "quarantined" in runs[0]  # a status this report does not know gets its own column
    newest = runs[1]
    assert newest[runs[0].index("quarantined")] == "1"
    assert newest[runs[0].index("retryable")] == str(260 - s["complete"])
    assert f"{MAX_TABLE_ROWS} of {s['complete']} videos shown" in page
    groups = re.findall(r'data-error-class="([^"]+)"', page)
    assert sorted(groups) == ["RuntimeError", "UnsupportedCodecError", "VideoError"]
    assert len(page) < 1_000_000


def test_report_over_s3_matches_the_local_one(tmp_path: Path, s3: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Same dataset, local and on S3: the same numbers; tracks read through pyarrow's S3
    filesystem, crops through a presigned URL; no credential on the page."""
    from jobs.storage import S3Storage

    local, params_id = make_synthetic_dataset(tmp_path / "ds", 20, tracks_per_video=6, annotated=1)
    remote = S3Storage("s3://reports/tracks/", s3)
    remote.client.create_bucket(Bucket="reports")
    for obj in local.list(params_id + "/"):
        remote.upload(local.root / obj.key, obj.key)
    here = summary_of(build_report(local, params_id).decode())
    uri = write_report(remote, params_id)
    assert uri == f"s3://reports/tracks/{params_id}/{REPORT_NAME}"
    page = remote.read_bytes(f"{params_id}/{REPORT_NAME}").decode()
    there = summary_of(page)
    assert {k: v for k, v in there.items() if k != "generated_at"} == {k: v for k, v in here.items()
                                                                        if k != "generated_at"}
    assert page.count("data:image/jpeg") >= 4
    assert S3_CANARY not in page and "AKIAVIDTRACKTEST" not in page and "X-Amz-" not in page
    # the command line, the endpoint from boto3's environment variable instead of the flag
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3)
    assert main(["report", f"s3://reports/tracks/{params_id}", "--out", str(tmp_path / "cli.html")]) == 0
    assert summary_of((tmp_path / "cli.html").read_text())["tracks"] == here["tracks"]


def test_report_of_a_dataset_with_no_run_yet(tmp_path: Path) -> None:
    (tmp_path / "pid0").mkdir()
    (tmp_path / "pid0" / "config.json").write_text('{"params_id": "pid0"}')
    page = build_report(LocalStorage(tmp_path), "pid0").decode()
    s = summary_of(page)
    assert (s["videos"], s["runs"], s["tracks"]) == (0, 0, 0)
    assert len(re.findall(r'<svg[^>]* class="chart"', page)) == len(CHARTS)  # every chart drawn, saying "no data"
    assert "No failed videos" in page
