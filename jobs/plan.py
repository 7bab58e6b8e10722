"""Plan a run: list the archive, filter, skip what is done for this params_id, biggest first."""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from datetime import datetime

from jobs.layout import DatasetLayout
from jobs.storage import LocalStorage, S3Storage, matches

log = logging.getLogger(__name__)

DEFAULT_INCLUDE = ["*.mp4", "*.mov", "*.mkv", "*.avi", "*.webm", "*.m4v", "*.MP4", "*.MOV"]
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def video_id_for(key: str) -> str:
    """Stable, path-safe id for an input key: a readable slug of the file name plus a
    hash of the whole key (so 'a/x.mp4' and 'b/x.mp4' differ). Never contains '/',
    '..' or non-ASCII, and is at most 60 characters."""
    stem = key.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    slug = _UNSAFE.sub("_", stem).strip("._-")[:40] or "video"
    return f"{slug}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def local_name_for(key: str) -> str:
    """Local file name for a downloaded object: derived from a hash of the key, never
    from the key text; the extension is kept only if it is short and alphanumeric."""
    ext = key.rsplit(".", 1)[-1] if "." in key.rsplit("/", 1)[-1] else ""
    suffix = f".{ext.lower()}" if re.fullmatch(r"[A-Za-z0-9]{1,8}", ext) else ""
    return hashlib.sha256(key.encode()).hexdigest()[:32] + suffix


@dataclass(frozen=True)
class VideoTask:
    key: str  # relative to the input root
    video_id: str
    size: int
    modified: datetime


@dataclass
class Plan:
    todo: list[VideoTask]
    done: list[VideoTask]  # already have a _done marker for this params_id
    failed_before: dict[str, tuple[VideoTask, str]]  # video_id -> (task, earlier error); object unchanged


def plan_run(source: LocalStorage | S3Storage, layout: DatasetLayout, include: list[str], exclude: list[str],
             modified_since: datetime | None = None, retry_failed: bool = False) -> Plan:
    tasks = []
    for obj in source.list():
        if not matches(obj.key, include, exclude):
            continue
        if modified_since is not None and obj.modified < modified_since:
            continue
        tasks.append(VideoTask(obj.key, video_id_for(obj.key), obj.size, obj.modified))
    done_ids = layout.done_ids()
    failed = {} if retry_failed else layout.failed_markers()
    failed_before = {}
    for t in tasks:
        m = failed.get(t.video_id)
        if t.video_id not in done_ids and m and (m.get("size"), m.get("modified")) == (t.size, t.modified.isoformat()):
            failed_before[t.video_id] = (t, f"{m.get('error_class', '')}: {m.get('error_message', '')}")
    todo = sorted((t for t in tasks if t.video_id not in done_ids and t.video_id not in failed_before),
                  key=lambda t: (-t.size, t.key))
    done = [t for t in tasks if t.video_id in done_ids]
    log.info("planned %d videos: %d to process, %d already done, %d failed before (unchanged; --retry-failed "
             "to try again)", len(tasks), len(todo), len(done), len(failed_before))
    return Plan(todo, done, failed_before)
