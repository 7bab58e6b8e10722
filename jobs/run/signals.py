"""SIGINT/SIGTERM during a run: the first sets a flag the dispatcher reads (stop dispatching,
let in-flight videos finish within --grace-seconds, record the rest as cancelled); a second
stops at once (KeyboardInterrupt)."""

from __future__ import annotations

import logging
import signal
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger("vidtrack." + __name__)


@contextmanager
def signals_to_flag() -> Iterator[list[int]]:
    """The flag: an empty list, then [signum] once a signal arrived."""
    stop: list[int] = []

    def handler(signum: int, _frame: object) -> None:
        if stop:
            raise KeyboardInterrupt
        stop.append(signum)
        log.warning("%s: no new videos; waiting for the ones in flight (again to stop now)",
                    signal.Signals(signum).name)

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for s, h in old.items():
            signal.signal(s, h)
