"""A storage root that is a local folder. Writes go to a temporary name and are renamed;
leases are `fcntl.flock` locks, which the kernel drops when their holder dies."""

from __future__ import annotations

import os
import shutil
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jobs.storage.base import (
    UNKNOWN_SIZE,
    LeaseHeld,
    ObjectInfo,
    SourceChangedError,
    StorageError,
    check_key,
    printable,
)
from tracking.atomic import partial_path, write_bytes_atomic


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

    def local_path(self, key: str = "") -> Path | None:
        return self.root / check_key(key) if key else self.root

    def reader_url(self, key: str) -> str:
        return str(self.root / check_key(key))

    def parquet_dataset(self, keys: Sequence[str]) -> Any:
        import pyarrow.dataset as ds

        return ds.dataset([str(self.root / check_key(k)) for k in keys], format="parquet")

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
