"""Actors' scratch folders: a copy of the video in flight and its outputs before upload, one
folder per actor process under `<tmp>/vidtrack-work/` (or $VIDTRACK_WORK_DIR)."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

log = logging.getLogger("vidtrack." + __name__)

WORK_ROOT = Path(os.environ.get("VIDTRACK_WORK_DIR") or Path(tempfile.gettempdir()) / "vidtrack-work")


def claim_workdir(node_id: str) -> Path:
    """This actor's scratch folder, `<tmp>/vidtrack-work/<node>-<pid>`. Folders left by actors
    of this node whose process is gone (killed, SIGTERM) are removed first."""
    WORK_ROOT.mkdir(parents=True, exist_ok=True)
    for d in WORK_ROOT.glob(f"{node_id[:12]}-*"):
        pid = d.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(d, ignore_errors=True)
            log.info("removed scratch folder %s of a dead actor", d)
    workdir = WORK_ROOT / f"{node_id[:12]}-{os.getpid()}"
    workdir.mkdir(exist_ok=True)
    return workdir


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
