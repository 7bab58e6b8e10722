"""Re-entry (tracking/reentry.py): a person who leaves and comes back gets their earlier ID, by
appearance alone, never joining tracks that overlap in time; on constructed tracks with a known
answer, and on a real clip in which everyone leaves for 5 s (bench/gap_clip.py)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from bench.gap_clip import build_gap_clip
from jobs.cli import main
from tests.conftest import MODEL, TUD, need_shared
from tests.test_refine import FPS, OFF, _log, _unit
from tracking.config import RefineConfig
from tracking.refine import refine

ON = RefineConfig(**{**OFF.__dict__, "reentry_max_gap_s": 30.0, "reentry_max_distance": 0.2})
PERSON = np.array([0])


def _box(x: float):  # type: ignore[no-untyped-def]
    return lambda f: (x, 50.0, x + 20.0, 90.0)


def _ids(rows) -> dict[int, set[int]]:  # type: ignore[no-untyped-def]
    return {int(t): set(rows.frame[rows.track == t].tolist()) for t in np.unique(rows.track)}


def test_a_person_back_after_ten_seconds_elsewhere_keeps_their_id() -> None:
    """Track 1 leaves at frame 20; track 2 appears 10 s later at the other side of the view with
    the same appearance: one ID. Stitching alone (2 s, motion-checked) leaves them apart."""
    a, b = _unit(1), _unit(2)
    tracks = [{"id": 1, "frames": range(0, 20), "box": _box(10), "emb": a},
              {"id": 3, "frames": range(0, 300), "box": _box(400), "emb": b},
              {"id": 2, "frames": range(270, 300), "box": _box(600), "emb": a}]
    back, stats = refine(_log(tracks, 300), ON, FPS, reentry_classes=PERSON)
    assert stats.reentered == 1 and len(_ids(back)) == 2
    stitch_only = RefineConfig(**{**OFF.__dict__, "stitch_max_gap_s": 2.0, "reentry_max_gap_s": 0.0})
    apart, _ = refine(_log(tracks, 300), stitch_only, FPS, reentry_classes=PERSON)
    assert len(_ids(apart)) == 3


def test_never_joins_tracks_that_overlap_another_look_or_too_long_a_gap() -> None:
    a = _unit(1)
    overlap = [{"id": 1, "frames": range(0, 50), "box": _box(10), "emb": a},
               {"id": 2, "frames": range(40, 90), "box": _box(300), "emb": a}]
    other = [{"id": 1, "frames": range(0, 20), "box": _box(10), "emb": a},
             {"id": 2, "frames": range(100, 120), "box": _box(300), "emb": _unit(5)}]
    late = [{"id": 1, "frames": range(0, 20), "box": _box(10), "emb": a},
            {"id": 2, "frames": range(20 + 31 * 25, 20 + 32 * 25), "box": _box(300), "emb": a}]
    for tracks, n in ((overlap, 90), (other, 120), (late, 20 + 32 * 25)):
        rows, stats = refine(_log(tracks, n), ON, FPS, reentry_classes=PERSON)
        assert stats.reentered == 0 and len(_ids(rows)) == 2


def test_only_reidentified_classes_and_one_successor_each() -> None:
    """A car (class 2) is never joined by re-entry; two later look-alikes: the closer one wins
    and the other stays a track of its own."""
    a = _unit(1)
    cars = [{"id": 1, "frames": range(0, 20), "box": _box(10), "emb": a, "cls": lambda _: 2},
            {"id": 2, "frames": range(100, 120), "box": _box(300), "emb": a, "cls": lambda _: 2}]
    rows, stats = refine(_log(cars, 120), ON, FPS, reentry_classes=PERSON)
    assert stats.reentered == 0
    near = a + 0.05 * _unit(7)
    twins = [{"id": 1, "frames": range(0, 20), "box": _box(10), "emb": a},
             {"id": 2, "frames": range(100, 120), "box": _box(300), "emb": near / np.linalg.norm(near)},
             {"id": 3, "frames": range(100, 120), "box": _box(500), "emb": a}]
    rows, stats = refine(_log(twins, 120), ON, FPS, reentry_classes=PERSON)
    assert stats.reentered == 1
    assert _ids(rows)[1] == set(range(0, 20)) | set(range(100, 120))
    assert int(rows.track[(rows.frame == 110) & (rows.xyxy[:, 0] == 500)][0]) == 1


@pytest.mark.slow
def test_everyone_gone_for_five_seconds_keeps_their_ids(tmp_path: Path) -> None:
    """TUD-Campus cut in the middle by 5 s of its empty scene (bench/gap_clip.py: the frames'
    median, in which nobody is detected): with the default re-identification network and re-entry,
    IDF1 stays within 5 points of the uncut sequence; without re-entry (its gap 0) everyone who
    comes back is someone new. One detection pass per sequence (`vidtrack eval --sweep`)."""
    need_shared(TUD, MODEL)
    gap = build_gap_clip(TUD, tmp_path / "TUD-Campus-gap", gap_s=5.0)
    idf1 = {}
    for name, seq in (("uncut", TUD), ("gap", gap)):
        table = tmp_path / f"{name}.csv"
        assert main(["eval", str(seq), "--set", f"detector.model={MODEL}", "--sweep",
                     "refine.reentry_max_gap_s=0,120", "--sweep-out", str(table)]) == 0
        for row in csv.DictReader(table.open()):
            idf1[name, float(row["combination"].split("=")[1])] = float(row["idf1"])
    assert idf1["gap", 120.0] >= idf1["uncut", 120.0] - 5.0, idf1
    assert idf1["gap", 0.0] < idf1["gap", 120.0] - 5.0, idf1
