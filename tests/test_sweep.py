"""`vidtrack eval --sweep`: detect once, re-track every combination, one table best first."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from jobs.cli import main
from jobs.eval.sweep import combinations, parse_sweeps
from tests.conftest import MODEL, TUD, need_shared
from tracking.config import ConfigError


def test_grid_and_refusals() -> None:
    grid = parse_sweeps(["tracker.max_age_s=0.5,1", "refine.stitch_max_gap_s=1,2,4"])
    assert len(combinations(grid)) == 6
    assert combinations(grid)[0] == ["tracker.max_age_s=0.5", "refine.stitch_max_gap_s=1"]
    with pytest.raises(ConfigError, match=r"detector\.conf"):  # would change the detections themselves
        parse_sweeps(["detector.conf=0.3,0.5"])
    with pytest.raises(ConfigError, match=r"expected section\.key"):
        parse_sweeps(["tracker.max_age_s"])


@pytest.mark.slow
def test_sweep_scores_every_combination_from_one_detection_pass(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    need_shared(MODEL, TUD)
    base = ["--set", f"detector.model={MODEL}", "--set", "detector.imgsz=320"]
    assert main(["eval", str(TUD), *base, "--sweep", "tracker.max_age_s=0.5,2",
                 "--sweep", "refine.stitch_max_gap_s=0,2", "--sweep-out", str(tmp_path / "s.csv")]) == 0
    table = capsys.readouterr().out.strip().splitlines()
    rows = list(csv.DictReader((tmp_path / "s.csv").open()))
    assert len(table) == 5 and len(rows) == 4
    hota = [float(r["hota"]) for r in rows]
    assert hota == sorted(hota, reverse=True) and len(set(hota)) > 1  # best first; the settings matter
    # the combination equal to the defaults scores what a plain eval scores (same records)
    assert main(["eval", str(TUD), *base]) == 0
    plain = capsys.readouterr().out.strip().splitlines()[-1].split("|")[1].split()
    default = next(r for r in rows if r["combination"] == "tracker.max_age_s=0.5 refine.stitch_max_gap_s=2")
    assert float(default["hota"]) == pytest.approx(float(plain[1]), abs=0.01)
    assert float(default["idf1"]) == pytest.approx(float(plain[5]), abs=0.01)
