"""Multi-node behaviour on one machine with ray.cluster_utils.Cluster: a head with no
CPUs and two 1-CPU worker nodes, so every actor lives on a worker node."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from jobs.run import run_job
from tests.conftest import job_spec, make_archive_clips


def test_work_spreads_over_both_nodes(cluster: tuple[Any, list[Any]], tmp_path: Path) -> None:
    make_archive_clips(tmp_path / "in", 6, 8)
    r = run_job(job_spec(tmp_path / "in", tmp_path / "out"))
    assert (r.ok, r.failed) == (6, 0)
    nodes = {a.node_id for a in r.attempts if a.status == "ok"}
    assert len(nodes) == 2  # one actor per worker node, both used


def test_losing_a_node_mid_run_still_completes(cluster: tuple[Any, list[Any]], tmp_path: Path) -> None:
    c, workers = cluster
    make_archive_clips(tmp_path / "in", 6, 24)
    out = tmp_path / "out"
    removed: list[bool] = []

    def remove_when_started() -> None:
        deadline = time.time() + 120
        while time.time() < deadline:
            if any(out.glob("*/_done/*.json")):  # work is under way on both nodes
                c.remove_node(workers[1])
                removed.append(True)
                return
            time.sleep(0.2)

    t = threading.Thread(target=remove_when_started)
    t.start()
    r = run_job(job_spec(tmp_path / "in", out))
    t.join()
    assert removed
    assert (r.ok, r.failed) == (6, 0)
    # the removed node's actor was cut off mid-video and that video was retried on the other node
    lost = [a for a in r.attempts if a.status == "lost"]
    assert lost and all(a.node_id for a in lost)
    for a in lost:
        assert any(b.video_id == a.video_id and b.status == "ok" and b.node_id != a.node_id for b in r.attempts)
    assert len(list(out.glob("*/_done/*.json"))) == 6
    assert len(list(out.glob("*/tracks/video_id=*/part-0.parquet"))) == 6
