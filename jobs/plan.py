"""Plan a run: list the archive, filter, skip what is done for this params_id (for the same
version of the source object), biggest first. Everything passed over is counted by reason."""

from __future__ import annotations

import hashlib
import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from jobs.dataset.index import read_markers
from jobs.dataset.layout import DatasetLayout
from jobs.dataset.markers import DoneMarker, FailedMarker, SourceIdentity
from jobs.storage import ObjectInfo, Storage, matches, printable

log = logging.getLogger("vidtrack.jobs.plan")

# Matched case-insensitively; .ts/.mts/.m2ts are what CCTV recorders and camcorders write.
DEFAULT_INCLUDE = ["*.mp4", "*.m4v", "*.mov", "*.mkv", "*.webm", "*.avi", "*.ts", "*.mts", "*.m2ts",
                   "*.mpg", "*.mpeg", "*.wmv", "*.flv", "*.3gp"]
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _key_bytes(key: str) -> bytes:
    return key.encode("utf-8", "surrogateescape")  # local names that are not UTF-8 keep their bytes


def video_id_for(key: str) -> str:
    """Stable, path-safe id for an input key: a readable slug of the file name plus a
    hash of the whole key (so 'a/x.mp4' and 'b/x.mp4' differ). Never contains '/',
    '..' or non-ASCII, and is at most 60 characters."""
    stem = key.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    slug = _UNSAFE.sub("_", stem).strip("._-")[:40] or "video"
    return f"{slug}-{hashlib.sha256(_key_bytes(key)).hexdigest()[:12]}"


def local_name_for(key: str) -> str:
    """Local file name for a downloaded object: derived from a hash of the key, never
    from the key text; the extension is kept only if it is short and alphanumeric."""
    ext = key.rsplit(".", 1)[-1] if "." in key.rsplit("/", 1)[-1] else ""
    suffix = f".{ext.lower()}" if re.fullmatch(r"[A-Za-z0-9]{1,8}", ext) else ""
    return hashlib.sha256(_key_bytes(key)).hexdigest()[:32] + suffix


@dataclass(frozen=True)
class VideoTask:
    obj: ObjectInfo  # the version of the source object this run processes
    video_id: str
    replaces: bool = False  # an earlier version of this source was done or failed: replace its outputs

    @property
    def key(self) -> str:
        return self.obj.key

    @property
    def name(self) -> str:
        return printable(self.obj.key)

    @property
    def size(self) -> int:
        return self.obj.size

    @property
    def identity(self) -> SourceIdentity:
        return SourceIdentity.of(self.obj)


@dataclass
class Plan:
    todo: list[VideoTask]
    done: list[VideoTask]  # complete for this params_id, source unchanged
    failed_before: list[tuple[VideoTask, FailedMarker]]  # failed for its own reasons, source unchanged
    ignored: Counter[str] = field(default_factory=Counter)  # objects passed over, by reason
    listed: int = 0  # objects under the input, videos or not
    done_digest: str = ""  # of the `_done` markers as listed (jobs/dataset/index.py): the report built from them
    markers_changed: bool = False  # markers appeared, changed or went since the marker index was written

    @property
    def changed(self) -> int:
        return sum(t.replaces for t in self.todo)


def list_videos(source: Storage, include: list[str], exclude: list[str], modified_since: datetime | None,
                settle_seconds: float) -> tuple[list[VideoTask], Counter[str], int]:
    """Video objects to consider, the others counted by reason, and how many were listed."""
    settled_before = datetime.now(UTC) - timedelta(seconds=settle_seconds)
    tasks, ignored, listed = [], Counter[str](), 0
    for obj in source.list():
        listed += 1
        if not matches(obj.key, include, []):
            ignored["not a video name (--include)"] += 1
        elif not matches(obj.key, include, exclude):
            ignored["excluded (--exclude)"] += 1
        elif modified_since is not None and obj.modified < modified_since:
            ignored["older than --modified-since"] += 1
        elif settle_seconds and obj.modified > settled_before:
            ignored[f"modified in the last {settle_seconds:g} s (--settle-seconds; next run)"] += 1
        else:
            tasks.append(VideoTask(obj, video_id_for(obj.key)))
    ignored.update(source.ignored)
    return tasks, ignored, listed


def plan_run(source: Storage, layout: DatasetLayout, include: list[str], exclude: list[str],
             modified_since: datetime | None = None, retry_failed: bool = False,
             settle_seconds: float = 0.0) -> Plan:
    tasks, ignored, listed = list_videos(source, include, exclude, modified_since, settle_seconds)
    done_read, failed_read = read_markers(layout, "_done", DoneMarker), read_markers(layout, "_failed", FailedMarker)
    done_by_id, failed_by_id = done_read.markers, failed_read.markers
    plan = Plan([], [], [], ignored, listed, done_read.digest, done_read.changed or failed_read.changed)
    for t in tasks:
        done, failed = done_by_id.get(t.video_id), failed_by_id.get(t.video_id)
        if done is not None and done.matches(t.identity):
            plan.done.append(t)
        elif failed is not None and failed.matches(t.identity) and not retry_failed:
            plan.failed_before.append((t, failed))
        else:
            plan.todo.append(VideoTask(t.obj, t.video_id, replaces=done is not None or failed is not None))
    plan.todo.sort(key=lambda t: (-t.size, t.key))
    log.info("listed %d objects: %d videos to process (%d changed since processed), %d already done, "
             "%d failed before and unchanged (--retry-failed to try again)", listed, len(plan.todo),
             plan.changed, len(plan.done), len(plan.failed_before))
    for reason, n in sorted(ignored.items()):
        log.info("ignored %d objects: %s", n, reason)
    return plan
