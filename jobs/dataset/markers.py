"""The per-video markers: typed `_done/` and `_failed/` records that carry the source object's
identity (size, mtime, ETag), so a changed source is seen. The `_failed` marker is written
in one place (`write_failed_marker`), whether the video failed for its own reasons in an
actor or killed its actor on every attempt."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Self, TypeVar

from jobs.dataset.index import read_markers
from jobs.dataset.manifest import Attempt, Status, known_fields, now_iso
from jobs.storage import Storage, StorageError

if TYPE_CHECKING:
    from jobs.dataset.layout import DatasetLayout
    from jobs.storage import ObjectInfo

log = logging.getLogger("vidtrack." + __name__)


@dataclass(frozen=True)
class SourceIdentity:
    """What identifies one version of a source object: size and modification time, and the
    ETag where the storage has one (S3). Two identities match when their ETags match, or,
    lacking ETags, when size and mtime do."""

    size: int
    modified: str  # ISO 8601, UTC
    etag: str = ""

    @classmethod
    def of(cls, obj: ObjectInfo) -> SourceIdentity:
        return cls(obj.size, obj.modified.isoformat(), obj.etag)

    def same_as(self, other: SourceIdentity) -> bool:
        if self.etag and other.etag:
            return self.etag == other.etag and self.size == other.size
        return (self.size, self.modified) == (other.size, other.modified)


@dataclass(frozen=True)
class _Marker:
    video_id: str
    source_key: str
    source: SourceIdentity | None  # None: a marker written before identities were recorded

    def to_bytes(self) -> bytes:
        return (json.dumps(asdict(self), indent=2, sort_keys=True) + "\n").encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        d = json.loads(data)
        src = d.get("source")
        if src is None and "size" in d and "modified" in d:  # failure markers of vidtrack 0.1
            src = {"size": d["size"], "modified": d["modified"]}
        d["source"] = SourceIdentity(**known_fields(SourceIdentity, src)) if isinstance(src, dict) else None
        return cls(**known_fields(cls, d))

    @property
    def written_at(self) -> str:
        raise NotImplementedError

    def matches(self, current: SourceIdentity) -> bool:
        """Does this marker describe the current version of the source? A marker without an
        identity (older vidtrack) matches unless the source was modified after it was written."""
        if self.source is not None:
            return self.source.same_as(current)
        return bool(self.written_at) and current.modified <= self.written_at


@dataclass(frozen=True)
class DoneMarker(_Marker):
    """`_done/<id>.json`, written last: the video's outputs are complete for this source version."""

    params_id: str = ""
    run_id: str = ""
    attempt: int = 0
    frames: int = 0
    frames_declared: int = 0
    rows: int = 0
    tracks_sha256: str = ""
    fps: float = 0.0
    width: int = 0
    height: int = 0
    tracks_per_class: dict[str, int] = field(default_factory=dict)
    tracker_frames: dict[str, int] = field(default_factory=dict)  # resolved from seconds and fps
    refine: dict[str, int] = field(default_factory=dict)  # what refinement changed
    finished_at: str = ""
    start_time: str = ""  # the container's creation_time when it had one (`vidtrack count --clock-pattern container`)

    @property
    def written_at(self) -> str:
        return self.finished_at


@dataclass(frozen=True)
class FailedMarker(_Marker):
    """`_failed/<id>.json`: the video failed for its own reasons; skipped until it changes."""

    error_class: str = ""
    error_message: str = ""
    run_id: str = ""
    attempt: int = 0
    at: str = ""

    @property
    def written_at(self) -> str:
        return self.at


@dataclass(frozen=True)
class DetectionsMarker(_Marker):
    """`_detections/<detections_id>/_done/<id>.json`, written last: the video's detections file
    (jobs/detections.py) is complete for this source version. (vidtrack 0.2 wrote a DoneMarker
    here with the detections_id in its `params_id`; those still read, as markers of their source.)"""

    detections_id: str = ""
    frames: int = 0
    finished_at: str = ""
    run_id: str = ""  # the run that wrote it

    @property
    def written_at(self) -> str:
        return self.finished_at


M = TypeVar("M", DoneMarker, FailedMarker, DetectionsMarker)


def done_markers(layout: DatasetLayout, save_index: bool = True) -> dict[str, DoneMarker]:
    """video_id -> its `_done` marker (the source version it describes), through the marker index
    (rewritten when stale, unless `save_index` is false: a reader that must write nothing)."""
    return read_markers(layout, "_done", DoneMarker, save=save_index).markers


def failed_markers(layout: DatasetLayout) -> dict[str, FailedMarker]:
    """video_id -> the failure marker (source identity, error) of earlier runs, through the marker index."""
    return read_markers(layout, "_failed", FailedMarker).markers


def read_marker(cls: type[M], storage: Storage, key: str, current: SourceIdentity) -> M | None:
    """The marker at `key` if it describes this version of the source; None when it is absent,
    unreadable or about another version."""
    try:
        marker = cls.from_bytes(storage.read_bytes(key))
    except (FileNotFoundError, StorageError, ValueError, TypeError):  # absent or unreadable: not done
        return None
    return marker if marker.matches(current) else None


def write_failed_marker(layout: DatasetLayout, row: Attempt, source: SourceIdentity, run_id: str = "") -> None:
    """`_failed/<id>.json` for a video that failed for its own reasons (`row` says why). Without
    its marker the failure would not stick: when it cannot be written, the row becomes
    retryable (stage publish) and says so."""
    marker = FailedMarker(row.video_id, row.source_key, source, error_class=row.error_class,
                          error_message=row.error_message, run_id=run_id or row.run_id, attempt=row.attempt,
                          at=now_iso())
    try:
        layout.storage.put_bytes(layout.failed(row.video_id), marker.to_bytes())
    except Exception as e:
        row.status, row.error_stage = Status.RETRYABLE, "publish"
        row.error_message = f"{row.error_message} (and its failure marker could not be written: {e})"[:2000]
