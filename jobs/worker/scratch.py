"""Actors' scratch folders: a copy of the video in flight and its outputs before upload, one
folder per actor process under `<tmp>/vidtrack-work/` (or $VIDTRACK_WORK_DIR), named by its
owner (`<host>-<pid>-<start time>`, jobs/procs.py). A folder whose owner no longer runs is
removed by the next actor or driver on that host (`sweep_scratch`), whatever Ray node or run
it belonged to; a live process's folder is never touched."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

from jobs.procs import ProcessRef, this_host

log = logging.getLogger("vidtrack." + __name__)

WORK_ROOT = Path(os.environ.get("VIDTRACK_WORK_DIR") or Path(tempfile.gettempdir()) / "vidtrack-work")


def claim_workdir(node_id: str = "") -> Path:
    """This actor's scratch folder, `<tmp>/vidtrack-work/<host>-<pid>-<start>`, after removing the
    folders of processes that are gone (killed actors, a killed driver's session). `node_id` is
    not part of the name: each embedded Ray session has a new one."""
    sweep_scratch()
    workdir = WORK_ROOT / ProcessRef.of(os.getpid()).tag()
    workdir.mkdir(parents=True, exist_ok=True)
    return workdir


def sweep_scratch(root: Path | None = None) -> list[Path]:
    """Remove the scratch folders under `root` (WORK_ROOT) whose owner on this host no longer
    runs, and those vidtrack 0.2 named `<node>-<pid>` whose pid is gone. Returns them."""
    root = root or WORK_ROOT
    removed = []
    for d in sorted(root.iterdir()) if root.is_dir() else []:
        if d.is_dir() and _orphaned(d.name):
            shutil.rmtree(d, ignore_errors=True)
            log.info("removed scratch folder %s of a process that is gone", d)
            removed.append(d)
    return removed


def _orphaned(name: str) -> bool:
    owner = ProcessRef.from_tag(name)
    if owner is not None:
        return owner.host == this_host() and not owner.alive()
    node, _, pid = name.rpartition("-")  # vidtrack 0.2: <node id[:12]>-<pid>, on this host
    return bool(node) and pid.isdigit() and not _pid_alive(int(pid))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
