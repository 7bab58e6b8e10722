"""One small interface over a local folder and an S3 prefix: the `Storage` protocol
(jobs/storage/base.py), implemented by `LocalStorage` (local.py) and `S3Storage` (s3.py).

Keys are '/'-separated and relative to the storage's root (a folder, or
``s3://bucket/prefix/``). Listing returns what is there; reads download to a
caller-chosen local path (or, where the storage allows, read in place: `local_path`,
`reader_url`, `parquet_dataset`); writes are whole-object and atomic (S3 puts are atomic;
local writes go to a temporary name and are renamed). Callers hold a `Storage` and never
ask which kind it is.
"""

from __future__ import annotations

from jobs.storage.base import (
    PARALLEL_READS,
    UNKNOWN_SIZE,
    LeaseHeld,
    ObjectInfo,
    SourceChangedError,
    Storage,
    StorageError,
    check_key,
    matches,
    printable,
)
from jobs.storage.local import LocalStorage
from jobs.storage.s3 import S3Storage


def open_storage(uri: str, endpoint_url: str | None = None) -> Storage:
    if uri.startswith("s3://"):
        return S3Storage(uri, endpoint_url)
    if "://" in uri:
        raise StorageError(f"unsupported storage URI {uri!r}: use s3://bucket/prefix/ or a local folder")
    return LocalStorage(uri)


def overlaps(a: Storage, b: Storage) -> bool:
    """True when one root contains the other (writing output under the input is refused).
    Both URIs are normalised (a resolved folder, or s3://bucket/prefix/), so containment is
    a prefix of whole path segments."""
    ua, ub = a.uri.rstrip("/") + "/", b.uri.rstrip("/") + "/"
    return ua.startswith(ub) or ub.startswith(ua)


__all__ = ["PARALLEL_READS", "UNKNOWN_SIZE", "LeaseHeld", "LocalStorage", "ObjectInfo", "S3Storage",
           "SourceChangedError", "Storage", "StorageError", "check_key", "matches", "open_storage", "overlaps",
           "printable"]
