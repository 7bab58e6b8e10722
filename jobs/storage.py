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
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

from tracking.atomic import partial_path, write_bytes_atomic

log = logging.getLogger(__name__)

MULTIPART_THRESHOLD = 64 * 1024 * 1024


class StorageError(RuntimeError):
    pass


@dataclass(frozen=True)
class ObjectInfo:
    key: str  # relative to the storage root
    size: int
    modified: datetime  # timezone-aware UTC


class Storage(Protocol):
    uri: str

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]: ...
    def exists(self, key: str) -> bool: ...
    def download(self, key: str, dest: Path) -> None: ...
    def read_bytes(self, key: str) -> bytes: ...
    def upload(self, src: Path, key: str) -> None: ...
    def put_bytes(self, key: str, data: bytes) -> None: ...


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

    def _path(self, key: str) -> Path:
        p = (self.root / check_key(key)).resolve()
        if not p.is_relative_to(self.root):
            raise StorageError(f"refusing key {key!r}: resolves outside {self.root}")
        return p

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        base = self.root / prefix if prefix else self.root
        if not base.exists():
            return
        for p in sorted(base.rglob("*")):
            if p.is_file() and not p.is_symlink():
                st = p.stat()
                yield ObjectInfo(p.relative_to(self.root).as_posix(), st.st_size,
                                 datetime.fromtimestamp(st.st_mtime, UTC))

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def download(self, key: str, dest: Path) -> None:
        import shutil

        shutil.copyfile(self.root / key, dest)  # key came from list(): read-only use

    def read_bytes(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def upload(self, src: Path, key: str) -> None:
        import shutil

        dest = self._path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = partial_path(dest)
        shutil.copyfile(src, tmp)
        os.replace(tmp, dest)

    def put_bytes(self, key: str, data: bytes) -> None:
        write_bytes_atomic(self._path(key), data)


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

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket,
                                                                         Prefix=self.prefix + prefix)
        for page in pages:
            for obj in page.get("Contents", []):
                key = obj["Key"][len(self.prefix):]
                if key and not key.endswith("/"):
                    yield ObjectInfo(key, int(obj["Size"]), obj["LastModified"])

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self.prefix + check_key(key))
            return True
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise

    def download(self, key: str, dest: Path) -> None:
        self.client.download_file(self.bucket, self.prefix + key, str(dest))

    def read_bytes(self, key: str) -> bytes:
        body: bytes = self.client.get_object(Bucket=self.bucket, Key=self.prefix + check_key(key))["Body"].read()
        return body

    def upload(self, src: Path, key: str) -> None:
        from boto3.s3.transfer import TransferConfig

        self.client.upload_file(str(src), self.bucket, self.prefix + check_key(key),
                                Config=TransferConfig(multipart_threshold=MULTIPART_THRESHOLD))

    def put_bytes(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self.prefix + check_key(key), Body=data)


def open_storage(uri: str, endpoint_url: str | None = None) -> LocalStorage | S3Storage:
    if uri.startswith("s3://"):
        return S3Storage(uri, endpoint_url)
    if "://" in uri:
        raise StorageError(f"unsupported storage URI {uri!r}: use s3://bucket/prefix/ or a local folder")
    return LocalStorage(uri)


def overlaps(a: LocalStorage | S3Storage, b: LocalStorage | S3Storage) -> bool:
    """True when one root contains the other (writing output under the input is refused)."""
    if isinstance(a, LocalStorage) and isinstance(b, LocalStorage):
        return a.root.is_relative_to(b.root) or b.root.is_relative_to(a.root)
    if isinstance(a, S3Storage) and isinstance(b, S3Storage):
        return a.bucket == b.bucket and (a.prefix.startswith(b.prefix) or b.prefix.startswith(a.prefix))
    return False


def matches(key: str, include: list[str], exclude: list[str]) -> bool:
    """fnmatch patterns on the key and on its file name: '*.mp4' matches at any depth."""
    name = key.rsplit("/", 1)[-1]

    def hit(patterns: list[str]) -> bool:
        return any(fnmatch.fnmatchcase(key, p) or fnmatch.fnmatchcase(name, p) for p in patterns)

    return hit(include) and not hit(exclude)
