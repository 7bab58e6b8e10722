"""The marker index: a cache of the `_done/` and `_failed/` markers, so that a run (and the report)
reads a dataset's done and failed state in as many requests as listing the markers takes (one
per 1,000 markers on S3), not one per video.

    <params_id>/_index/done.parquet     video_id, version, body: one row per `_done/` marker
    <params_id>/_index/failed.parquet   the same for `_failed/`

`version` is what a listing says of the marker object (its ETag on S3; its size and mtime in a
local folder) and `body` its bytes as they were read. Reading the markers lists their folder (the
listing stays the truth: a marker gone is not done, a marker rewritten has a new version), reads
the index (one GET) and GETs only the markers whose version the index does not hold: those
published since the index was written (by actors, by a run that was killed) or rewritten. When
any was read or an entry dropped, the index is rewritten; any reader may (runs, the report, count),
and writers that race only cost each other cache misses. The markers are written and read as
before, so older vidtrack, which never looks at `_index/`, reads the same dataset.
"""

from __future__ import annotations

import hashlib
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, Protocol, Self, TypeVar

import pyarrow as pa
import pyarrow.parquet as pq

from jobs.storage import PARALLEL_READS, ObjectInfo, StorageError

if TYPE_CHECKING:
    from jobs.dataset.layout import DatasetLayout

log = logging.getLogger("vidtrack." + __name__)

INDEX_SCHEMA = pa.schema([pa.field("video_id", pa.string()), pa.field("version", pa.string()),
                          pa.field("body", pa.binary())])


class Decodable(Protocol):
    @classmethod
    def from_bytes(cls, data: bytes) -> Self: ...


M = TypeVar("M", bound=Decodable)


@dataclass
class MarkerRead(Generic[M]):
    """The markers of one folder (video_id -> marker), and what reading them cost."""

    markers: dict[str, M]
    listed: int  # marker objects listed
    fetched: int  # read one by one: not in the index, or changed since it was written
    dropped: int  # index entries whose marker is gone
    digest: str  # of the listed (video_id, version) pairs: equal digests, equal markers

    @property
    def changed(self) -> bool:
        """The index did not describe the markers as they are (it has been rewritten since)."""
        return bool(self.fetched or self.dropped)


def index_key(layout: DatasetLayout, folder: str) -> str:
    return layout.key("_index", f"{folder.strip('_')}.parquet")


def version_of(obj: ObjectInfo) -> str:
    """What changes whenever the object is rewritten, as a listing reports it."""
    return f"etag:{obj.etag}" if obj.etag else f"{obj.size}:{obj.modified.isoformat()}"


def read_markers(layout: DatasetLayout, folder: str, cls: type[M], save: bool = True) -> MarkerRead[M]:
    """Every marker under `<params_id>/<folder>/`, through the index (rewritten when stale and
    `save`). An unreadable marker is logged and left out (its video is not done)."""
    prefix = layout.key(folder) + "/"
    listed = {o.key[len(prefix):-len(".json")]: (o.key, version_of(o))
              for o in layout.storage.list(prefix) if o.key.endswith(".json")}
    cached = _load(layout, folder) if listed else {}
    bodies = {vid: body for vid, (version, body) in cached.items() if listed.get(vid, ("", ""))[1] == version}
    missing = [vid for vid in listed if vid not in bodies]
    with ThreadPoolExecutor(max_workers=PARALLEL_READS) as pool:  # one small GET each, in parallel
        bodies.update(zip(missing, pool.map(layout.storage.read_bytes, [listed[v][0] for v in missing]),
                          strict=True))
    read: MarkerRead[M] = MarkerRead({}, len(listed), len(missing), sum(vid not in listed for vid in cached),
                      _digest({vid: v for vid, (_, v) in listed.items()}))
    for vid in sorted(listed):
        try:
            read.markers[vid] = cls.from_bytes(bodies[vid])
        except (ValueError, TypeError) as e:  # unreadable marker: treat the video as not done
            log.warning("ignoring unreadable marker %s (%s: %s)", listed[vid][0], e.__class__.__name__, e)
    if read.changed and save:
        _save(layout, folder, {vid: (listed[vid][1], bodies[vid]) for vid in sorted(listed)})
    log.debug("%s: %d markers, %d read one by one, %d index entries dropped", prefix, read.listed,
              read.fetched, read.dropped)
    return read


def _digest(versions: dict[str, str]) -> str:
    h = hashlib.sha256()
    for vid in sorted(versions):
        h.update(f"{vid}\0{versions[vid]}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def _load(layout: DatasetLayout, folder: str) -> dict[str, tuple[str, bytes]]:
    """video_id -> (version, body) from the index; empty when there is none or it is unreadable."""
    key = index_key(layout, folder)
    try:
        table = pq.read_table(pa.BufferReader(layout.storage.read_bytes(key)))
        ids, versions, bodies = (table.column(c).to_pylist() for c in INDEX_SCHEMA.names)
    except (FileNotFoundError, StorageError) as e:  # none yet (or unreachable): read the markers one by one
        log.info("marker index %s not read (%s); reading its markers one by one", key, e)
        return {}
    except (pa.ArrowException, KeyError, ValueError) as e:
        log.warning("ignoring unreadable marker index %s (%s: %s)", key, e.__class__.__name__, e)
        return {}
    return {vid: (version, body) for vid, version, body in zip(ids, versions, bodies, strict=True)}


def _save(layout: DatasetLayout, folder: str, entries: dict[str, tuple[str, bytes]]) -> None:
    key = index_key(layout, folder)
    table = pa.Table.from_pydict({"video_id": list(entries), "version": [v for v, _ in entries.values()],
                                  "body": [b for _, b in entries.values()]}, schema=INDEX_SCHEMA)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    try:
        layout.storage.put_bytes(key, sink.getvalue().to_pybytes())
    except Exception as e:  # a cache: the next reader reads the markers one by one again
        log.warning("could not write the marker index %s (%s: %s); the next run reads its markers one by one",
                    key, e.__class__.__name__, e)
