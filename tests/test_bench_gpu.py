"""`vidtrack-bench --gpu` (bench/gpu.py): one line and exit 0 without CUDA; its workers, table and
JSON run end to end on the CPU (--gpu-device cpu: the real pipeline, tiny passes)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.gpu import COLUMNS, table
from tests.conftest import MODEL, VIDEOS, need_shared
from tracking.inference import cuda_present

REPO = Path(__file__).resolve().parents[1]


def _bench(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bench", "--gpu", "--model", str(MODEL), *argv], cwd=REPO,
                          capture_output=True, text=True, timeout=300, check=False)


@pytest.mark.skipif(cuda_present(), reason="this machine has CUDA: the bench would measure it")
def test_without_cuda_it_says_so_in_one_line_and_exits_0(tmp_path: Path) -> None:
    p = _bench("--json", str(tmp_path / "g.json"))
    assert p.returncode == 0, p.stderr
    assert p.stdout.count("\n") == 1 and p.stdout.startswith("gpu bench: no CUDA device on this machine")
    assert not (tmp_path / "g.json").exists()


def test_workers_table_and_json_run_end_to_end_on_the_cpu(tmp_path: Path) -> None:
    need_shared(MODEL, VIDEOS)
    out = tmp_path / "g.json"
    p = _bench("--gpu-device", "cpu", "--gpus-per-actor", "0.5", "--gpu-seconds", "0.2", "--gpu-frames", "4",
               "--set", "detector.imgsz=160", "--json", str(out))
    assert p.returncode == 0, p.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["devices"] == ["cpu"] and report["gpu_query"] == "none"
    clips = sorted(v.stem for v in VIDEOS.glob("*.mp4"))
    assert report["inputs"] == [f"{c} {size}" for c in clips for size in ("768x432", "1920x1080")]
    (phase,) = report["phases"]
    assert (phase["gpus_per_actor"], phase["workers_per_gpu"], phase["workers"]) == (0.5, 2, 2)
    assert [r["input"] for r in phase["rows"]] == report["inputs"]
    for r in phase["rows"]:
        assert r["frames"] >= 8 and r["frames"] % 4 == 0  # two workers, whole passes of 4 frames
        assert r["frames_per_second_per_gpu"] == pytest.approx(r["frames"] / r["wall_seconds"], rel=0.01)
        assert set(r["ms_per_frame"]) == set(COLUMNS) and r["ms_per_frame"]["inference"] > 0
        assert r["ms_per_frame"]["decode"] > 0 and r["gpu"] == {}
    lines = p.stdout.splitlines()
    assert lines[0].startswith("gpu bench: cpu;") and len(lines) == 2 + len(report["inputs"]) + 1
    assert all(line.split()[0] == "0.5" for line in lines[2:-1])


def test_the_table_names_a_skipped_setting_and_the_gpu_columns() -> None:
    row = {"input": "clip 1920x1080", "frames": 100, "frames_per_second_per_gpu": 250.0,
           "ms_per_frame": dict.fromkeys(COLUMNS, 1.0),
           "gpu": {"cuda:0": {"util_mean_pct": 87.5, "mem_peak_mib": 5120.0, "samples": 9}}}
    report = {"devices": ["cuda:0 (NVIDIA H200)"], "gpu_query": "nvidia-smi",
              "phases": [{"gpus_per_actor": 1.0, "rows": [row]}, {"gpus_per_actor": 0.25, "skipped": "20 s left"}]}
    lines = table(report).splitlines()
    assert "GPU query: nvidia-smi" in lines[0]
    assert lines[2].split()[:4] == ["1", "clip", "1920x1080", "250.0"] and lines[2].split()[-2:] == ["87.5", "5120"]
    assert lines[3] == "     0.25 skipped: 20 s left"
