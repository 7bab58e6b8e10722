"""What every storage root is: the `Storage` protocol, the objects it lists, its errors, and the
key rules shared by both implementations (jobs/storage/local.py, jobs/storage/s3.py)."""

from __future__ import annotations

import fnmatch
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

PARALLEL_READS = 16  # small objects (markers) one caller reads at once, each on its own connection
UNKNOWN_SIZE = -1  # an ObjectInfo made without listing: download it without checking its version


class StorageError(RuntimeError):
    """Storage could not be listed, read or written. Names the object, never credentials."""


class LeaseHeld(RuntimeError):
    """Another run holds the lease on this video: it is being processed right now."""


class SourceChangedError(StorageError):
    """The source object changed between listing and fetching (still being written, or
    replaced): this attempt is not valid; the next run sees the new version."""


@dataclass(frozen=True)
class ObjectInfo:
    key: str  # relative to the storage root; from a local listing it may hold surrogate escapes
    size: int
    modified: datetime  # timezone-aware UTC
    etag: str = ""  # S3's ETag; empty for local files


def printable(key: str) -> str:
    """A key for logs and tables: bytes that are not UTF-8 (a local file name from another
    system) appear backslash-escaped instead of failing every encoder downstream."""
    return key.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


class Storage(Protocol):
    """What the job and the report need of a storage root; `LocalStorage` and `S3Storage`
    implement it. Callers use these methods only, never the class or its attributes."""

    uri: str
    ignored: Counter[str]  # objects a listing passed over, by reason (symlink loops, broken links)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]: ...
    def exists(self, key: str) -> bool: ...
    def download(self, obj: ObjectInfo, dest: Path) -> None: ...
    def read_bytes(self, key: str) -> bytes: ...
    def upload(self, src: Path, key: str) -> None: ...
    def put_bytes(self, key: str, data: bytes) -> None: ...
    def delete(self, key: str) -> None: ...
    def lease(self, key: str, owner: str, run: str, ttl: float) -> AbstractContextManager[Callable[[], None]]: ...

    def local_path(self, key: str = "") -> Path | None:
        """The file (or, for "", the root folder) behind `key` when the storage is a local folder,
        to be read in place; None when it is not local (download it, or stream it)."""
        ...

    def reader_url(self, key: str) -> str:
        """Something a streaming reader (PyAV, DuckDB) opens for `key`: a local path, or a
        short-lived presigned URL (seeks become range requests)."""
        ...

    def parquet_dataset(self, keys: Sequence[str]) -> Any:
        """A pyarrow dataset over these Parquet objects (DuckDB scans it with projection and
        filter pushdown)."""
        ...


def check_key(key: str) -> str:
    """Keys this job writes are built from sanitised ids; refuse anything that could
    climb out of the root."""
    if not key or "\\" in key or any(part in ("..", ".", "") for part in key.split("/")):
        raise StorageError(f"refusing unsafe object key {key!r}")
    return key


def matches(key: str, include: list[str], exclude: list[str]) -> bool:
    """Case-insensitive fnmatch patterns on the key and on its file name: '*.mp4' matches
    'a/b/CLIP.MP4' at any depth."""
    key = key.lower()
    name = key.rsplit("/", 1)[-1]

    def hit(patterns: list[str]) -> bool:
        return any(fnmatch.fnmatchcase(key, p.lower()) or fnmatch.fnmatchcase(name, p.lower()) for p in patterns)

    return hit(include) and not hit(exclude)
