"""Which process owns something, and whether it still runs: a process named by host, pid and
start time, so a pid the kernel has since given to another process is not taken for its
owner. The actors' scratch folders are named by their owner (jobs/worker/scratch.py) and an
actor asks whether its driver still runs before it publishes (jobs/worker/actor.py)."""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass

import psutil

_START_SLACK_S = 1.0  # start times read twice may differ by rounding; a reused pid starts later


def this_host() -> str:
    """The host name, reduced to letters, digits, '.', '_' and '-' (it is part of folder names)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", socket.gethostname())[:64] or "host"


@dataclass(frozen=True)
class ProcessRef:
    host: str
    pid: int
    started: float  # the process's start time, seconds since the epoch

    @classmethod
    def of(cls, pid: int) -> ProcessRef:
        """The running process `pid` on this host (psutil.NoSuchProcess when there is none)."""
        return cls(this_host(), pid, psutil.Process(pid).create_time())

    def on_this_host(self) -> bool:
        return self.host == this_host()

    def alive(self) -> bool:
        """Does this process still run? Only this host's processes can be told: another host's
        count as alive. A process we may not inspect counts as alive."""
        if not self.on_this_host():
            return True
        try:
            return abs(psutil.Process(self.pid).create_time() - self.started) < _START_SLACK_S
        except psutil.NoSuchProcess:
            return False
        except psutil.AccessDenied:
            return True

    def tag(self) -> str:
        """`<host>-<pid>-<start in centiseconds>`: a name that says who owns it."""
        return f"{self.host}-{self.pid}-{round(self.started * 100)}"

    @classmethod
    def from_tag(cls, tag: str) -> ProcessRef | None:
        parts = tag.rsplit("-", 2)
        if len(parts) != 3 or not (parts[1].isdigit() and parts[2].isdigit()):
            return None
        return cls(parts[0], int(parts[1]), int(parts[2]) / 100)
