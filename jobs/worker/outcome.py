"""What an attempt's failure means (README "Operating it nightly"):
- the video's own problem (`tracking.video.VideoError`: corrupt, incomplete, unsupported)
  -> `failed`, with a `_failed` marker carrying the source's identity;
- another run holds the video's lease -> `cancelled`: that run does it;
- anything else (storage, network, disk, a source that changed while read, a lease held by
  this same run: an earlier attempt cut off with its node) -> `retryable`: no marker, the
  driver retries it with backoff and the next run picks it up.
Each failure carries the stage it happened in (lease, fetch, process, publish)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from jobs.dataset.manifest import Attempt, Status
from jobs.logsafe import redact
from jobs.storage import LeaseHeld
from tracking.video import VideoError

log = logging.getLogger("vidtrack." + __name__)


class StageError(Exception):
    """An exception with the stage it happened in (lease, fetch, process, publish)."""

    def __init__(self, stage: str, cause: Exception) -> None:
        super().__init__(f"{stage}: {cause}")
        self.stage, self.cause = stage, cause


@contextmanager
def stage(name: str) -> Iterator[None]:
    """Wrap any exception raised inside in a `StageError` naming the stage."""
    try:
        yield
    except StageError:
        raise
    except Exception as e:
        raise StageError(name, e) from e


def classify(row: Attempt, err: StageError, run_id: str) -> bool:
    """Fill the row's status and error from the failure; True when it is the video's own fault."""
    cause = err.cause
    own = isinstance(cause, VideoError)
    # another run holds the video: this run leaves it to that one. Held by this run: an earlier attempt
    # whose actor was cut off is still going (a lost node's process): retry it after a backoff
    elsewhere = isinstance(cause, LeaseHeld) and f"run {run_id}," not in str(cause)
    row.status = Status.FAILED if own else Status.CANCELLED if elsewhere else Status.RETRYABLE
    row.error_class, row.error_stage = cause.__class__.__name__, err.stage
    row.error_message = redact(str(cause))[:2000]  # a row is kept for good: no credential in it (jobs/logsafe.py)
    log.warning("video %s %s in %s: %s: %s", row.source_key, row.status, err.stage, row.error_class,
                row.error_message)
    return own
