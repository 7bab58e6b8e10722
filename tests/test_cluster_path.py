"""The cluster path as the README has it (issue 16 items 8 and 9): an --address that nobody
answers or that refuses the driver ends in one line and a documented exit code within seconds;
`ray start --head` and `ray job submit --working-dir <repo> -- python -m jobs run ...` from the
installed environment end SUCCEEDED with the dataset written; -v before or after the command."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from jobs.cli import build_parser, verbosity
from jobs.exits import EXIT_INCOMPLETE
from jobs.run.session import RAY_CONNECT_TIMEOUT_S
from tests.conftest import JOB_OVERRIDES, MODEL, REPO, VIDEOS, _free_port, cut_video, need_shared

SETS = [a for o in JOB_OVERRIDES for a in ("--set", o)]
BIN = Path(sys.executable).parent


def _input(tmp_path: Path) -> Path:
    need_shared(VIDEOS, MODEL)
    inp = tmp_path / "in"
    inp.mkdir()
    cut_video(VIDEOS / "car-detection.mp4", inp / "cam.mp4", 4)
    return inp


def _run_with_address(tmp_path: Path, address: str, timeout: float) -> tuple[subprocess.CompletedProcess[str], float]:
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "jobs", "run", "--address", address, "--input", str(_input(tmp_path)),
                        "--output", str(tmp_path / "out"), "--no-progress", *SETS],
                       env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO, capture_output=True, text=True,
                       timeout=timeout)
    return r, time.monotonic() - t0


def _one_error_line(r: subprocess.CompletedProcess[str], address: str) -> str:
    errors = [line for line in r.stderr.splitlines() if "error" in line.lower() and "vidtrack" in line]
    assert len(errors) == 1 and address in errors[0] and "Traceback" not in r.stderr, r.stderr
    return errors[0]


def test_an_address_nobody_answers_is_one_line_and_exit_4_in_seconds(tmp_path: Path) -> None:
    address = f"127.0.0.1:{_free_port()}"
    r, seconds = _run_with_address(tmp_path, address, timeout=60)
    assert r.returncode == EXIT_INCOMPLETE and seconds < 10, (r.returncode, seconds, r.stderr)
    assert "nothing answers" in _one_error_line(r, address)
    assert not (tmp_path / "out").exists()  # nothing written


@pytest.fixture
def refusing_port() -> Iterator[int]:
    """Something that accepts TCP on every interface and closes at once: not a Ray that lets us in."""
    server = socket.create_server(("0.0.0.0", 0))
    port = server.getsockname()[1]

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    yield port
    server.close()


def test_a_cluster_that_refuses_the_driver_is_one_line_and_exit_4_in_bounded_time(refusing_port: int,
                                                                                  tmp_path: Path) -> None:
    address = f"127.0.0.1:{refusing_port}"
    r, seconds = _run_with_address(tmp_path, address, timeout=120)
    assert r.returncode == EXIT_INCOMPLETE and seconds < RAY_CONNECT_TIMEOUT_S + 15, (r.returncode, seconds)
    _one_error_line(r, address)
    assert not (tmp_path / "out").exists()


RUN = ["--input", "a", "--output", "b"]


def _ray_start(temp_dir: str, env: dict[str, str], *args: str) -> None:
    start = subprocess.run([str(BIN / "ray"), "start", "--head", "--num-cpus", "2", "--temp-dir", temp_dir, *args],
                           env={**env, "RAY_USAGE_STATS_ENABLED": "0"}, capture_output=True, text=True, timeout=180)
    assert start.returncode == 0, start.stderr[-3000:]


@pytest.mark.slow
def test_a_cluster_with_token_auth_and_no_token_is_one_line_and_exit_4(tmp_path: Path) -> None:
    head_home, gcs = tmp_path / "head", _free_port()
    head_home.mkdir()  # `ray start --head` turns token authentication on when ~/.ray/auth_token exists
    env = {**os.environ, "HOME": str(head_home)}
    subprocess.run([str(BIN / "ray"), "get-auth-token", "--generate"], env=env, capture_output=True, timeout=60,
                   check=True)
    temp_dir = tempfile.mkdtemp(prefix="vtc-", dir="/tmp")
    try:
        _ray_start(temp_dir, env, "--port", str(gcs), "--include-dashboard", "false")
        address = f"127.0.0.1:{gcs}"
        os.environ["HOME"], home = str(tmp_path / "driver"), os.environ["HOME"]  # the driver has no token
        try:
            r, seconds = _run_with_address(tmp_path, address, timeout=120)
        finally:
            os.environ["HOME"] = home
    finally:
        _stop_cluster(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)
    assert r.returncode == EXIT_INCOMPLETE and seconds < RAY_CONNECT_TIMEOUT_S + 15, (r.returncode, seconds)
    error = _one_error_line(r, address)
    others = [line for line in r.stderr.splitlines() if line != error and " vidtrack." not in line]
    assert "token" in error and not others, others  # nothing from Ray's client retrying


@pytest.mark.parametrize("argv, level", [(["-v", "run", *RUN], 1), (["run", *RUN, "-v"], 1), (["run", *RUN], 0),
                                          (["-v", "run", *RUN, "--verbose"], 2), (["report", "DATASET", "-v"], 1)])
def test_verbose_before_or_after_the_command(argv: list[str], level: int) -> None:
    assert verbosity(build_parser().parse_args(argv)) == level


def _stop_cluster(temp_dir: str) -> None:
    """Only the processes of the cluster this test started: those naming its temp dir, and theirs."""
    mine = [p for p in psutil.process_iter(["cmdline"])
            if temp_dir in " ".join(p.info["cmdline"] or []) and p.pid != os.getpid()]
    procs = {p.pid: p for p in mine}
    for p in mine:
        with contextlib.suppress(psutil.NoSuchProcess):
            procs.update({c.pid: c for c in p.children(recursive=True)})
    for p in procs.values():
        with contextlib.suppress(psutil.NoSuchProcess):
            p.send_signal(signal.SIGTERM)
    _, alive = psutil.wait_procs(list(procs.values()), timeout=15)
    for p in alive:
        p.kill()


@pytest.mark.slow
def test_readme_cluster_path_ray_start_and_job_submit(tmp_path: Path) -> None:
    inp, out = _input(tmp_path), tmp_path / "out"
    gcs, dashboard = _free_port(), _free_port()
    temp_dir = tempfile.mkdtemp(prefix="vtc-", dir="/tmp")  # short: Ray's socket paths have a limit
    # HOME: `ray start --head` turns token authentication on when ~/.ray/auth_token exists
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "HOME": str(tmp_path / "home")}
    try:
        _ray_start(temp_dir, env, "--port", str(gcs), "--dashboard-port", str(dashboard), "--dashboard-host",
                   "127.0.0.1", "--include-dashboard", "true")
        ray_job = [str(BIN / "ray"), "job"]
        head, job_id = ["--address", f"http://127.0.0.1:{dashboard}"], f"vidtrack-test-{os.getpid()}"
        submit = subprocess.run([*ray_job, "submit", *head, "--submission-id", job_id, "--working-dir", str(REPO),
                                 "--", "python", "-m", "jobs", "run", "--address", "auto", "--input", str(inp),
                                 "--output", str(out), "--no-progress", "--actors", "1", *SETS],
                                env=env, capture_output=True, text=True, timeout=600)
        assert submit.returncode == 0, (submit.stdout + submit.stderr)[-4000:]
        from ray.job_submission import JobStatus, JobSubmissionClient

        client = JobSubmissionClient(head[1])
        assert client.get_job_status(job_id) == JobStatus.SUCCEEDED, client.get_job_logs(job_id)[-4000:]
    finally:
        _stop_cluster(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)
    datasets = list(out.glob("*/manifest/run_id=*/part-0.parquet"))
    assert len(datasets) == 1 and list(out.glob("*/tracks/video_id=cam-*")), sorted(out.rglob("*"))
