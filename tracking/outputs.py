"""A video's output files, all or none (`OutputSet`).

Each output is an `AtomicOutput` (tracking/atomic.py): written under a temporary name and
published by a rename on a clean close. `OutputSet` ties a video's outputs together on one
`contextlib.ExitStack`, so that if any of them fails, before or while it closes, none is
left under its name, including those already published.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import TypeVar

from tracking.atomic import AtomicOutput
from tracking.timing import StageTimer

_Out = TypeVar("_Out", bound=AtomicOutput)


class OutputSet:
    """A video's output files, all or none. Each is an `AtomicOutput` entered on the
    caller's ExitStack: written under a temporary name, published by a rename on a clean
    close, removed if anything fails before or while it closes. Outputs close in reverse
    order of opening; one already published is removed again if a later one fails."""

    def __init__(self, stack: contextlib.ExitStack, timer: StageTimer) -> None:
        self._stack, self._timer = stack, timer
        self._published: list[Path] = []
        stack.push(self._withdraw)  # first in, so it runs after every output has closed

    def open(self, out: _Out, stage: str) -> _Out:
        """Enter `out` on the stack; the time its close takes counts towards `stage`."""
        return self._stack.enter_context(self._closing(out, stage))

    @contextlib.contextmanager
    def _closing(self, out: _Out, stage: str) -> Iterator[_Out]:
        with out:
            yield out
            t = time.perf_counter()
        self._timer.add(stage, t)
        self._published.append(out.path)

    @contextlib.contextmanager
    def withdrawn_on_error(self) -> Iterator[None]:
        """For a last output written after the stack has closed (the summary)."""
        try:
            yield
        except BaseException:
            self._remove_published()
            raise

    def _withdraw(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                  tb: TracebackType | None) -> None:
        if exc_type is not None:
            self._remove_published()

    def _remove_published(self) -> None:
        for path in self._published:
            path.unlink(missing_ok=True)
