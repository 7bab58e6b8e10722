"""The archive job (`vidtrack run`): jobs/run/driver.py is the entry point; this package hands
on the three names callers use (the CLI, the bench, the tests)."""

from jobs.run.driver import run_job
from jobs.run.job import JobSpec, RunResult

__all__ = ["JobSpec", "RunResult", "run_job"]
