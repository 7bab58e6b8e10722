"""bench/naive_scores.py: the scoring of the naive pipeline's MOT rows (known answers on a hand-made
sequence) and the lossless encoding its frames go through (exactly cv2.imread's frames back).
The seed script itself is not run here (a torch + ultralytics process per sequence: minutes)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from bench.naive_scores import encode_lossless, score, shared_sequences
from tracking.mot import MotSequence

# two people over 4 frames; the tracker keeps person A as id 1, and gives person B id 2 then id 3
GT = [(f, pid, 10 + 100 * (pid - 1), 10, 40, 80) for f in range(1, 5) for pid in (1, 2)]
TRACKED = [(f, 1, 10, 10, 40, 80) for f in range(1, 5)] + [(f, 2 if f <= 2 else 3, 110, 10, 40, 80)
                                                           for f in range(1, 5)]


def _sequence(root: Path, name: str, frames: int = 4, fps: int = 14) -> MotSequence:
    seq = root / name
    (seq / "gt").mkdir(parents=True)
    (seq / "img1").mkdir()
    rng = np.random.default_rng(len(name))
    for i in range(1, frames + 1):
        cv2.imwrite(str(seq / "img1" / f"{i:06d}.jpg"), rng.integers(0, 256, (120, 200, 3), dtype=np.uint8))
    (seq / "gt" / "gt.txt").write_text("".join(f"{f},{i},{x},{y},{w},{h},1,1,1.0\n" for f, i, x, y, w, h in GT))
    (seq / "seqinfo.ini").write_text(f"[Sequence]\nname={name}\nimDir=img1\nframeRate={fps}\nseqLength={frames}\n"
                                     "imWidth=200\nimHeight=120\nimExt=.jpg\n")
    return MotSequence.open(seq)


def test_score_known_answers_across_benchmarks(tmp_path: Path) -> None:
    # IDF1: A<->1 (4 frames) + B<->2 (2 of 4) = 6 IDTP of 8 each side -> 75.0; MOTA: one switch in 8 -> 87.5
    seqs = [_sequence(tmp_path, "TUD-Tiny"), _sequence(tmp_path, "MOT17-99-TINY")]
    assert {s.benchmark for s in seqs} == {"MOT15", "MOT17"}
    res = tmp_path / "res.txt"
    res.write_text("".join(f"{f},{i},{x},{y},{w},{h},1,-1,-1,-1\n" for f, i, x, y, w, h in TRACKED))
    got = score({s.name: res for s in seqs}, seqs)
    for s in seqs:
        assert got[s.name].idf1 == pytest.approx(75.0)
        assert got[s.name].mota == pytest.approx(87.5)
        assert got[s.name].id_switches == 1


def test_encode_lossless_gives_imread_frames(tmp_path: Path) -> None:
    seq = _sequence(tmp_path, "TUD-Tiny", frames=3, fps=14)
    video = encode_lossless(seq, tmp_path / "tiny.mkv")
    cap = cv2.VideoCapture(str(video))
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(14.0)
    decoded = []
    while (got := cap.read())[0]:
        decoded.append(got[1])
    want = [np.asarray(cv2.imread(str(p))) for p in sorted((seq.root / "img1").glob("*.jpg"))]
    assert len(decoded) == 3
    assert all(np.array_equal(a, b) for a, b in zip(decoded, want, strict=True))


def test_shared_sequences_finds_both_layouts(tmp_path: Path) -> None:
    _sequence(tmp_path / "data" / "mot", "TUD-Tiny")
    _sequence(tmp_path / "data" / "mot" / "MOT17-mini", "MOT17-99-TINY")
    (tmp_path / "data" / "mot" / "no-gt").mkdir()
    assert [p.name for p in shared_sequences(tmp_path)] == ["MOT17-99-TINY", "TUD-Tiny"]
