"""Outputs that appear only whole: write to a hidden temporary name beside the target,
publish with an atomic rename on a clean close, remove on error."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from types import TracebackType
from typing import Any, Self


def partial_path(path: Path) -> Path:
    """A hidden, unique temporary name in the same folder (so the final rename is atomic)."""
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.partial")


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_path(p)
    try:
        tmp.write_bytes(data)
        os.replace(tmp, p)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a write that fails (disk full) leaves nothing behind
        raise


def write_json_atomic(path: str | os.PathLike[str], data: Any) -> None:
    """`data` as indented JSON (keys sorted; what JSON cannot hold as its `str()`), whole or not at all."""
    write_bytes_atomic(path, (json.dumps(data, indent=2, sort_keys=True, default=str) + "\n").encode())


class AtomicOutput:
    """Base for writers: subclasses write to `self._tmp` and implement `_finish()` (flush and
    close) and `_discard()` (close without flushing). `close()` publishes, `abort()` removes."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = partial_path(self.path)

    def _finish(self) -> None:
        raise NotImplementedError

    def _discard(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        try:
            self._finish()
            os.replace(self._tmp, self.path)
        except BaseException:
            self._tmp.unlink(missing_ok=True)  # a close that fails publishes nothing and leaves nothing
            raise

    def abort(self) -> None:
        try:
            self._discard()
        finally:
            self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

