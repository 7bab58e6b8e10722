"""A storage root that is an S3 prefix, through boto3 with the `standard` retry mode and
multipart uploads for large files (s3transfer). Leases use S3's conditional writes
(If-None-Match / If-Match). Credentials come only from boto3's default chain
(environment, shared config, instance or pod role) and are never taken as arguments,
logged or written anywhere.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from jobs.storage.base import (
    PARALLEL_READS,
    UNKNOWN_SIZE,
    LeaseHeld,
    ObjectInfo,
    SourceChangedError,
    StorageError,
    check_key,
)

log = logging.getLogger("vidtrack." + __name__)

MULTIPART_THRESHOLD = 64 * 1024 * 1024
PRESIGNED_URL_S = 900  # how long a reader URL (the report's contact sheet) stays valid
UPLOAD_THREADS = 10  # s3transfer's threads for one multipart upload or download (its default)
# One client's connection pool holds a connection for every thread that can use it at once: parallel
# reads of markers, a transfer's threads, and the few others (lease renewal, journal, progress). A
# smaller pool makes urllib3 drop connections ("Connection pool is full, discarding connection").
MAX_POOL_CONNECTIONS = PARALLEL_READS + UPLOAD_THREADS + 6


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

            from jobs.logsafe import remember_credentials

            session = boto3.session.Session()
            self._client = session.client(
                "s3", endpoint_url=self.endpoint_url,
                config=Config(retries={"mode": "standard", "max_attempts": 10},
                              max_pool_connections=MAX_POOL_CONNECTIONS))
            creds = session.get_credentials()  # resolved by the client already: whatever the chain found
            if creds is not None:  # never logged: redacted wherever they would appear
                frozen = creds.get_frozen_credentials()
                remember_credentials((frozen.secret_key, frozen.token))
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

    def local_path(self, key: str = "") -> Path | None:
        return None

    def reader_url(self, key: str) -> str:
        url: str = self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": self.prefix + check_key(key)},
            ExpiresIn=PRESIGNED_URL_S)
        return url

    def parquet_dataset(self, keys: Sequence[str]) -> Any:
        """Read through pyarrow's S3 filesystem; credentials: the AWS SDK's default chain, as boto3's."""
        import pyarrow.dataset as ds
        from pyarrow import fs

        region = self.client.meta.region_name or "us-east-1"
        # an S3-compatible server: --s3-endpoint-url, or boto3's own AWS_ENDPOINT_URL(_S3)
        endpoint = self.endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        if endpoint:
            scheme, _, host = endpoint.partition("://")
            s3fs = fs.S3FileSystem(endpoint_override=host, scheme=scheme, region=region)
        else:
            s3fs = fs.S3FileSystem(region=fs.resolve_s3_region(self.bucket))
        return ds.dataset([f"{self.bucket}/{self.prefix}{k}" for k in keys], filesystem=s3fs, format="parquet")

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
                                    Config=TransferConfig(multipart_threshold=MULTIPART_THRESHOLD,
                                                          max_concurrency=UPLOAD_THREADS))

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
