"""The embedded Ray session must not outlive its driver. Ray's raylet and GCS share the
driver's fate, but when the driver is killed (SIGKILL, the OOM killer) its dashboard and
runtime-env agents live on with parent PID 1, and actors keep running for seconds. So a run
that starts a local Ray starts this reaper beside it (`Reaper.start`, jobs/run/session.py):
a small process, in a session of its own, that notes the driver's descendants every second
and, once the driver is gone (its pipe closes), terminates them (SIGKILL after a grace) and
removes the scratch folders they leave (jobs/worker/scratch.py). A driver that ends normally
shuts Ray down and releases its reaper, which then exits without touching anything.

    python -m jobs.reaper DRIVER_PID   (stdin: the driver's pipe)
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import subprocess
import sys
from pathlib import Path

import psutil

log = logging.getLogger("vidtrack.jobs.reaper")  # also when run as __main__

RELEASE = b"release\n"
GRACE_S = 3.0  # SIGTERM first; what still runs after this gets SIGKILL


class Reaper:
    """The driver's handle on its reaper process."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc

    @classmethod
    def start(cls) -> Reaper:
        root = str(Path(__file__).resolve().parents[1])  # importable however vidtrack was installed
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
        proc = subprocess.Popen([sys.executable, "-m", "jobs.reaper", str(os.getpid())], stdin=subprocess.PIPE,
                                env=env, start_new_session=True)  # a terminal's Ctrl-C is the driver's to handle
        return cls(proc)

    def release(self) -> None:
        """The session ended normally: the reaper exits and touches nothing."""
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(RELEASE)
            self.proc.stdin.close()
            self.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired) as e:
            log.warning("the session's reaper (pid %d) did not exit when released (%s); killing it", self.proc.pid, e)
            self.proc.kill()


def watch(driver_pid: int) -> list[psutil.Process]:
    """Wait until the driver is gone or releases us; returns the descendants to reap ([] when released)."""
    try:
        driver = psutil.Process(driver_pid)
    except psutil.NoSuchProcess:
        return []
    seen: dict[int, psutil.Process] = {}
    while True:
        try:
            seen.update((p.pid, p) for p in driver.children(recursive=True) if p.pid not in seen)
        except psutil.NoSuchProcess:
            break
        ready, _, _ = select.select([sys.stdin.buffer], [], [], 1.0)
        if ready:
            line = sys.stdin.buffer.readline()
            if line == RELEASE:
                return []
            if not line:  # EOF: the driver's end of the pipe closed with it
                break
    return [p for p in seen.values() if p.pid != os.getpid()]


def reap(procs: list[psutil.Process]) -> list[int]:
    """Terminate `procs` (those still the processes we saw), SIGKILL what outlives the grace."""
    alive = []
    for p in procs:
        try:
            p.terminate()
            alive.append(p)
        except psutil.NoSuchProcess:  # gone already, or its pid now belongs to another process
            pass
    _, left = psutil.wait_procs(alive, timeout=GRACE_S)
    for p in left:
        with contextlib.suppress(psutil.NoSuchProcess):  # it ended during the grace after all
            p.kill()
    return [p.pid for p in alive]


def main(argv: list[str]) -> int:
    from jobs.worker.scratch import sweep_scratch

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    procs = watch(int(argv[0]))
    if procs:
        killed = reap(procs)
        log.warning("driver %s is gone: ended %d processes of its Ray session (%s)", argv[0], len(killed),
                    ", ".join(map(str, killed)))
        sweep_scratch()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
