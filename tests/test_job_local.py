"""The archive job on local folders: planning, filters, refusals, the CLI's exit codes."""

from __future__ import annotations

import json
import os
import re
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from jobs.cli import EXIT_USAGE, main
from jobs.dataset.layout import DatasetLayout
from jobs.dataset.markers import DoneMarker, SourceIdentity
from jobs.exits import EXIT_SOME_FAILED
from jobs.plan import DEFAULT_INCLUDE, local_name_for, plan_run, video_id_for
from jobs.storage import LocalStorage, StorageError, check_key, matches
from tests.conftest import JOB_OVERRIDES, MODEL, make_archive_clips


@pytest.mark.parametrize("key", [
    "../../etc/passwd.mp4", "/abs/x.mp4", "a/../../b.mp4", "ünï/视频.mp4", "x" * 1000 + ".mp4", "a\\..\\b.mp4",
    "..", "",
])
def test_ids_and_local_names_are_safe(key: str) -> None:
    vid, local = video_id_for(key), local_name_for(key)
    for name in (vid, local):
        assert "/" not in name and "\\" not in name and name not in (".", "..") and name.isascii()
        assert len(name) <= 60 and not name.startswith(".")
    assert video_id_for(key) == vid  # stable


def test_same_name_in_two_folders_gets_two_ids() -> None:
    assert video_id_for("a/x.mp4") != video_id_for("b/x.mp4")


@pytest.mark.parametrize("key", ["../x", "/x", "a/../b", "a//b", "./a", "a\\b", ""])
def test_unsafe_output_keys_refused(key: str) -> None:
    with pytest.raises(StorageError):
        check_key(key)


@pytest.mark.parametrize("key, include, exclude, expected", [
    ("a/b/c.mp4", DEFAULT_INCLUDE, [], True),
    ("a/b/c.txt", DEFAULT_INCLUDE, [], False),
    ("a/tmp/c.mp4", DEFAULT_INCLUDE, ["*/tmp/*"], False),
    ("cam1/c.mp4", ["cam1/*"], [], True),
    ("cam2/c.mp4", ["cam1/*"], [], False),
])
def test_include_exclude(key: str, include: list[str], exclude: list[str], expected: bool) -> None:
    assert matches(key, include, exclude) is expected


def test_plan_filters_skips_done_and_orders_by_size(tmp_path: Path) -> None:
    src = tmp_path / "in"
    for name, size in [("a/small.mp4", 10), ("b/big.mp4", 1000), ("c/mid.mp4", 100), ("notes.txt", 5000),
                       ("old/old.mp4", 2000)]:
        p = src / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x" * size)
    old = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
    os.utime(src / "old" / "old.mp4", (old, old))
    layout = DatasetLayout(LocalStorage(tmp_path / "out"), "pid")
    mid = next(o for o in LocalStorage(src).list() if o.key == "c/mid.mp4")
    layout.storage.put_bytes(layout.done(video_id_for("c/mid.mp4")),
                             DoneMarker(video_id_for(mid.key), mid.key, SourceIdentity.of(mid)).to_bytes())
    plan = plan_run(LocalStorage(src), layout, DEFAULT_INCLUDE, [], datetime(2026, 6, 1, tzinfo=UTC))
    assert [t.key for t in plan.todo] == ["b/big.mp4", "a/small.mp4"]  # largest first
    assert [t.key for t in plan.done] == ["c/mid.mp4"]
    assert plan.ignored == {"not a video name (--include)": 1, "older than --modified-since": 1}


def test_local_run_cli_end_to_end(ray_local: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_archive_clips(tmp_path / "in" / "nested", 3, 6)
    (tmp_path / "in" / "broken.mp4").write_bytes(b"\x00" * 100)
    args = ["run", "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"), "--no-progress",
            "--actors", "1"] + [a for o in JOB_OVERRIDES for a in ("--set", o)]
    assert main(args) == EXIT_SOME_FAILED  # one video failed, the others completed
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (summary["ok"], summary["failed"]) == (3, 1)
    dataset = Path(summary["dataset"])
    # the README's one-line reads
    tracks = ds.dataset(dataset / "tracks", format="parquet").to_table()
    assert tracks.num_rows > 0 and len(list((dataset / "tracks").glob("video_id=*/part-0.parquet"))) == 3
    manifest = ds.dataset(dataset / "manifest", format="parquet").to_table()
    assert sorted(manifest["status"].to_pylist()) == ["failed", "ok", "ok", "ok"]
    import duckdb
    import polars as pl

    assert duckdb.sql(f"select count(*) from '{dataset}/tracks/*/*.parquet'").fetchall()[0][0] == tracks.num_rows
    assert pl.read_parquet(f"{dataset}/tracks/*/*.parquet").height == tracks.num_rows
    # the README's SQL examples run as written against this dataset
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    queries = re.findall(r"```sql\n(.*?)```", readme, re.S)
    assert len(queries) == 2
    people, dwell = (duckdb.sql(q.replace("out/<params_id>", str(dataset))).fetchall() for q in queries)
    assert people and all(n >= 1 for *_, n in people)
    assert dwell and all(d >= 0 for _, d, _ in dwell)
    # a rerun with the same parameters processes nothing: done videos are skipped, and the unchanged
    # broken one still counts as failed (exit 3), not as skipped
    assert main(args) == EXIT_SOME_FAILED
    rerun = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (rerun["skipped"], rerun["failed_before"], rerun["failed"], rerun["ok"]) == (3, 1, 0, 0)
    # the broken file is tried again once it changes, or when asked to
    assert main([*args, "--retry-failed"]) == EXIT_SOME_FAILED
    capsys.readouterr()
    os.utime(tmp_path / "in" / "broken.mp4", (1e9, 1e9))
    assert main(args) == EXIT_SOME_FAILED


def test_output_under_input_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "in").mkdir()
    rc = main(["run", "--input", str(tmp_path / "in"), "--output", str(tmp_path / "in" / "out"),
               "--set", f"detector.model={MODEL}"])
    assert rc == EXIT_USAGE and "overlaps" in capsys.readouterr().err
    assert not (tmp_path / "in" / "out").exists()


def test_missing_model_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_archive_clips(tmp_path / "in", 1, 3)
    rc = main(["run", "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"),
               "--set", "detector.model=/no/such/model.pt"])
    assert rc == EXIT_USAGE
    assert "--set detector.model=" in capsys.readouterr().err
