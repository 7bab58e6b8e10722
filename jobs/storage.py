"""One small interface over a local folder and an S3 prefix.

Keys are '/'-separated and relative to the storage's root (a folder, or
``s3://bucket/prefix/``). Listing returns what is there; reads download to a
caller-chosen local path; writes are whole-object and atomic (S3 puts are atomic;
local writes go to a temporary name and are renamed).

S3 goes through boto3 with the `standard` retry mode and multipart uploads for
large files (s3transfer). Credentials come only from boto3's default chain
(environment, shared config, instance or pod role) and are never taken as
arguments, logged or written anywhere.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

from tracking.atomic import partial_path, write_bytes_atomic

log = logging.getLogger("vidtrack." + __name__)

MULTIPART_THRESHOLD = 64 * 1024 * 1024
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
    """What the job needs of a storage root; `LocalStorage` and `S3Storage` implement it."""

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


def check_key(key: str) -> str:
    """Keys this job writes are built from sanitised ids; refuse anything that could
    climb out of the root."""
    if not key or "\\" in key or any(part in ("..", ".", "") for part in key.split("/")):
        raise StorageError(f"refusing unsafe object key {key!r}")
    return key


class LocalStorage:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser().resolve()
        self.uri = str(self.root)
        self.ignored: Counter[str] = Counter()

    def _path(self, key: str) -> Path:
        p = (self.root / check_key(key)).resolve()
        if not p.is_relative_to(self.root):
            raise StorageError(f"refusing key {key!r}: resolves outside {self.root}")
        return p

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Files under the root, sorted, following symlinks (to files and to folders) but
        never into a folder twice (no loops); broken links are counted in `ignored`."""
        base = self.root / prefix if prefix else self.root
        if not base.is_dir():
            return
        seen: set[tuple[int, int]] = set()
        for dirpath, dirnames, filenames in os.walk(base, followlinks=True):
            st = os.stat(dirpath)
            if (st.st_dev, st.st_ino) in seen:
                self.ignored["symlink loop"] += 1
                dirnames.clear()
                continue
            seen.add((st.st_dev, st.st_ino))
            dirnames.sort()
            for name in sorted(filenames):
                path = os.path.join(dirpath, name)
                try:
                    fst = os.stat(path)
                except OSError:
                    self.ignored["broken symlink or unreadable"] += 1
                    continue
                yield ObjectInfo(Path(os.path.relpath(path, self.root)).as_posix(), fst.st_size,
                                 datetime.fromtimestamp(fst.st_mtime, UTC))

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def download(self, obj: ObjectInfo, dest: Path) -> None:
        """Copy a listed file; fails with `SourceChangedError` if it is not the version listed
        (still being written, or replaced since)."""
        src = self.root / obj.key  # key came from list(): read-only use
        self._check_unchanged(obj, src)
        shutil.copyfile(src, dest)
        self._check_unchanged(obj, src)

    def _check_unchanged(self, obj: ObjectInfo, src: Path) -> None:
        if obj.size == UNKNOWN_SIZE:
            return
        st = src.stat()
        now = (st.st_size, datetime.fromtimestamp(st.st_mtime, UTC))
        if now != (obj.size, obj.modified):
            raise SourceChangedError(f"{printable(str(src))} changed since it was listed "
                                     f"({obj.size} -> {st.st_size} bytes): still being written?")

    def read_bytes(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def upload(self, src: Path, key: str) -> None:
        dest = self._path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = partial_path(dest)
        try:
            shutil.copyfile(src, tmp)
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)

    def put_bytes(self, key: str, data: bytes) -> None:
        write_bytes_atomic(self._path(key), data)

    @contextmanager
    def lease(self, key: str, owner: str, run: str, ttl: float) -> Iterator[Callable[[], None]]:
        """An exclusive lock on `key` held while the block runs (fcntl.flock: the kernel drops it
        when the holder dies, so it never needs to expire or be taken over; `run` and `ttl` are
        for stores that lack this). Raises LeaseHeld naming the holder. The lock file is removed
        on release; a taker checks that the file it locked is still the one at the path."""
        import fcntl

        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            f = open(path, "a+")  # noqa: SIM115 (closed below on every path)
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.seek(0)
                holder = f.read().strip() or "another process"
                f.close()
                raise LeaseHeld(f"{key} is held by {holder}") from None
            if path.exists() and os.stat(path).st_ino == os.fstat(f.fileno()).st_ino:
                break
            f.close()  # the holder released and removed it between our open and our lock: again
        try:
            f.truncate(0)
            f.write(owner + "\n")
            f.flush()
            yield lambda: None  # a held flock cannot be lost
        finally:
            self.delete(key)  # while still locked: nobody can hold the removed file
            f.close()

    def delete(self, key: str) -> None:
        """Remove the file and the folders it leaves empty (up to the root)."""
        path = self._path(key)
        path.unlink(missing_ok=True)
        for parent in path.parents:
            if parent == self.root or not parent.is_relative_to(self.root):
                break
            try:
                parent.rmdir()
            except OSError:  # not empty (or gone): stop climbing
                break


class S3Storage:
    def __init__(self, uri: str, endpoint_url: str | None = None) -> None:
        u = urlparse(uri)
        if u.scheme != "s3" or not u.netloc:
            raise StorageError(f"not an S3 URI: {uri!r} (expected s3://bucket/prefix/)")
        self.bucket = u.netloc
        self.prefix = u.path.lstrip("/")
        if self.prefix and not self.prefix.endswith("/"):
            self.prefix += "/"
        self.uri = f"s3://{self.bucket}/{self.prefix}"
        self.endpoint_url = endpoint_url
        self.ignored: Counter[str] = Counter()
        self._client: Any = None

    def __getstate__(self) -> dict[str, Any]:  # boto3 clients do not pickle; Ray ships this object
        return {**self.__dict__, "_client": None}

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3
            from botocore.config import Config

            self._client = boto3.session.Session().client(
                "s3", endpoint_url=self.endpoint_url,
                config=Config(retries={"mode": "standard", "max_attempts": 10}))
        return self._client

    def _name(self, key: str) -> str:
        return f"s3://{self.bucket}/{self.prefix}{key}"

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket,
                                                                         Prefix=self.prefix + prefix)
        with _s3_errors(self._name(prefix), "list"):
            for page in pages:
                for obj in page.get("Contents", []):
                    key = obj["Key"][len(self.prefix):]
                    if key and not key.endswith("/"):
                        yield ObjectInfo(key, int(obj["Size"]), obj["LastModified"], obj.get("ETag", "").strip('"'))

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            with _s3_errors(self._name(key), "check"):
                self.client.head_object(Bucket=self.bucket, Key=self.prefix + check_key(key))
            return True
        except StorageError as e:
            if isinstance(e.__cause__, ClientError) and _code(e.__cause__) in ("404", "NoSuchKey", "NotFound"):
                return False
            raise

    def download(self, obj: ObjectInfo, dest: Path) -> None:
        """Download exactly the version listed: its ETag is checked (If-Match) before and after
        the transfer, so an object replaced meanwhile fails with `SourceChangedError`."""
        self._check_unchanged(obj)
        with _s3_errors(self._name(obj.key), "download"):
            self.client.download_file(self.bucket, self.prefix + obj.key, str(dest))
        self._check_unchanged(obj)
        if obj.size != UNKNOWN_SIZE and dest.stat().st_size != obj.size:
            raise SourceChangedError(f"{self._name(obj.key)} changed since it was listed "
                                     f"({obj.size} -> {dest.stat().st_size} bytes)")

    def _check_unchanged(self, obj: ObjectInfo) -> None:
        if obj.etag:
            with _s3_errors(self._name(obj.key), "check"):
                self.client.head_object(Bucket=self.bucket, Key=self.prefix + obj.key, IfMatch=f'"{obj.etag}"')

    def read_bytes(self, key: str) -> bytes:
        with _s3_errors(self._name(key), "read"):
            body: bytes = self.client.get_object(Bucket=self.bucket, Key=self.prefix + check_key(key))["Body"].read()
        return body

    def upload(self, src: Path, key: str) -> None:
        from boto3.s3.transfer import TransferConfig

        with _s3_errors(self._name(key), "upload"):
            self.client.upload_file(str(src), self.bucket, self.prefix + check_key(key),
                                    Config=TransferConfig(multipart_threshold=MULTIPART_THRESHOLD))

    def put_bytes(self, key: str, data: bytes) -> None:
        with _s3_errors(self._name(key), "write"):
            self.client.put_object(Bucket=self.bucket, Key=self.prefix + check_key(key), Body=data)

    @contextmanager
    def lease(self, key: str, owner: str, run: str, ttl: float) -> Iterator[Callable[[], None]]:
        """Held while the block runs; see `_S3Lease`. Raises LeaseHeld naming the holder. The
        yielded function raises StorageError if a renewal failed (call it before publishing)."""
        lease = _S3Lease(self, key, owner, run, ttl)
        with _s3_errors(self._name(key), "lease"):
            lease.acquire()
        renewer = threading.Thread(target=lease.renew_forever, name="vidtrack-lease", daemon=True)
        renewer.start()
        try:
            yield lease.check
        finally:
            try:
                lease.release()
            except Exception as e:  # it expires by itself; the attempt's outcome stands
                log.warning("could not release lease %s (%s: %s); it expires in %.0f s", self._name(key),
                            e.__class__.__name__, e, ttl)
            renewer.join(timeout=5)

    def delete(self, key: str) -> None:
        with _s3_errors(self._name(key), "delete"):
            self.client.delete_object(Bucket=self.bucket, Key=self.prefix + check_key(key))


class _S3Lease:
    """A lease object: created only if absent (If-None-Match: *); taken over, if unchanged since
    read (If-Match on its ETag), when it has expired or belongs to the same run (an earlier
    attempt whose actor died: the driver retries a video only after its attempt ended); renewed
    every ttl/3 by a thread (If-Match); deleted at the end. A renewal that fails marks the lease
    lost (`check()` raises)."""

    def __init__(self, store: S3Storage, key: str, owner: str, run: str, ttl: float) -> None:
        self.store, self.key, self.owner, self.run, self.ttl = store, store.prefix + check_key(key), owner, run, ttl
        self.etag, self.lost = "", ""
        self._stop = threading.Event()

    def _body(self) -> bytes:
        return json.dumps({"owner": self.owner, "run": self.run, "expires": time.time() + self.ttl}).encode()

    def _put(self, **cond: str) -> str:
        r = self.store.client.put_object(Bucket=self.store.bucket, Key=self.key, Body=self._body(), **cond)
        return str(r["ETag"])

    def acquire(self) -> None:
        from botocore.exceptions import ClientError

        try:
            self.etag = self._put(IfNoneMatch="*")
            return
        except ClientError as e:
            if _code(e) not in ("PreconditionFailed", "412"):
                raise
        held = self.store.client.get_object(Bucket=self.store.bucket, Key=self.key)
        info = json.loads(held["Body"].read() or b"{}")
        if float(info.get("expires", 0)) > time.time() and not (self.run and info.get("run") == self.run):
            raise LeaseHeld(f"{self.store._name(self.key[len(self.store.prefix):])} is held by {info.get('owner')}")
        try:
            self.etag = self._put(IfMatch=held["ETag"])  # expired: take it over, unless someone else just did
        except ClientError as e:
            raise LeaseHeld(f"{self.key}: taken over by another run just now") from e

    def renew_forever(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                self.etag = self._put(IfMatch=self.etag)
            except Exception as e:  # lost: the attempt must not publish
                self.lost = f"lease {self.key} lost ({e.__class__.__name__}: {e})"
                return

    def check(self) -> None:
        if self.lost:
            raise StorageError(self.lost)

    def release(self) -> None:
        self._stop.set()
        if not self.lost:
            self.store.client.delete_object(Bucket=self.store.bucket, Key=self.key)


def _code(e: Exception) -> str:
    return str(getattr(e, "response", {}).get("Error", {}).get("Code", ""))


@contextmanager
def _s3_errors(name: str, action: str) -> Iterator[None]:
    """botocore's many exception types -> `StorageError` naming the object and the action
    (`SourceChangedError` for a failed If-Match). Messages carry no credentials."""
    from boto3.exceptions import S3TransferFailedError
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as e:
        code = _code(e)
        if code in ("PreconditionFailed", "412"):
            raise SourceChangedError(f"{name} changed since it was listed (ETag differs)") from e
        hint = {"NoSuchBucket": "the bucket does not exist", "AccessDenied": "access denied",
                "InvalidObjectState": "the object is archived (restore it first)"}.get(code, code)
        raise StorageError(f"cannot {action} {name}: {hint or e}") from e
    except (BotoCoreError, S3TransferFailedError) as e:
        raise StorageError(f"cannot {action} {name}: {e}") from e


def open_storage(uri: str, endpoint_url: str | None = None) -> Storage:
    if uri.startswith("s3://"):
        return S3Storage(uri, endpoint_url)
    if "://" in uri:
        raise StorageError(f"unsupported storage URI {uri!r}: use s3://bucket/prefix/ or a local folder")
    return LocalStorage(uri)


def overlaps(a: Storage, b: Storage) -> bool:
    """True when one root contains the other (writing output under the input is refused)."""
    if isinstance(a, LocalStorage) and isinstance(b, LocalStorage):
        return a.root.is_relative_to(b.root) or b.root.is_relative_to(a.root)
    if isinstance(a, S3Storage) and isinstance(b, S3Storage):
        return a.bucket == b.bucket and (a.prefix.startswith(b.prefix) or b.prefix.startswith(a.prefix))
    return False


def matches(key: str, include: list[str], exclude: list[str]) -> bool:
    """Case-insensitive fnmatch patterns on the key and on its file name: '*.mp4' matches
    'a/b/CLIP.MP4' at any depth."""
    key = key.lower()
    name = key.rsplit("/", 1)[-1]

    def hit(patterns: list[str]) -> bool:
        return any(fnmatch.fnmatchcase(key, p.lower()) or fnmatch.fnmatchcase(name, p.lower()) for p in patterns)

    return hit(include) and not hit(exclude)
