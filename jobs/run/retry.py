"""The retry policy: what an attempt's outcome means for its video, decided from counts alone
(no pool, no queue; jobs/run/dispatch.py acts on the answers).

- ok / failed (the video's own fault): final, and the infrastructure streak ends;
- retryable (infrastructure): retried after a backoff (doubling) up to --max-attempts, then
  left for the next run; `breaker_threshold` of them in a row (across videos) open the
  circuit breaker: nothing more is dispatched (the output or input is down);
- the actor died: retried first, up to --max-attempts, then `failed` (it kills every actor
  that touches it); `cancelled` when the run is stopping.
"""

from __future__ import annotations

import logging

from jobs.dataset.manifest import Attempt, Status

log = logging.getLogger("vidtrack." + __name__)


class RetryPolicy:
    def __init__(self, max_attempts: int, backoff_seconds: float, breaker_threshold: int) -> None:
        self.max_attempts, self.backoff_seconds = max_attempts, backoff_seconds
        self.breaker_threshold = breaker_threshold
        self.infra_streak = 0
        self.breaker = ""  # why dispatching stopped ("" while it goes on)

    def final_outcome(self) -> None:
        """An ok or failed attempt: the streak of infrastructure failures is over."""
        self.infra_streak = 0

    def retry_delay(self, row: Attempt, attempt: int, stopped: bool) -> float | None:
        """A retryable attempt: seconds until the next attempt, or None when this row is final.
        Counts the streak and opens the breaker when it is long enough."""
        self.infra_streak += 1
        if self.infra_streak >= self.breaker_threshold and not self.breaker:
            self.breaker = (f"circuit breaker open after {self.infra_streak} infrastructure failures in a row; "
                            f"last: {row.error_stage}: {row.error_message}")[:1000]
            log.error("%s", self.breaker)
        if attempt < self.max_attempts and not (stopped or self.breaker):
            return self.backoff_seconds * 2 ** (attempt - 1)
        return None

    def after_death(self, attempt: int, stopped: bool) -> Status | None:
        """The actor died during the attempt: None to retry the video first, else its final status."""
        halted = stopped or bool(self.breaker)
        if attempt < self.max_attempts and not halted:
            return None
        return Status.CANCELLED if halted else Status.FAILED
