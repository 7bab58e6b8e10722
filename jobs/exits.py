"""How a command ends: its exit code (README "Operating it nightly") and the two errors that
choose one before any video is processed. `jobs.run.job.RunResult.exit_code` picks a run's;
`jobs.cli.main` maps the errors."""

from __future__ import annotations

import signal

EXIT_OK, EXIT_USAGE, EXIT_SOME_FAILED, EXIT_INCOMPLETE = 0, 2, 3, 4
EXIT_SIGNAL_BASE = 128  # 130 after SIGINT, 143 after SIGTERM
EXIT_INTERRUPTED = EXIT_SIGNAL_BASE + signal.SIGINT  # a second Ctrl-C, out of the CLI


class UsageError(ValueError):
    """Bad input from the user (paths, resources, parameters): one line, exit 2."""


class StartError(RuntimeError):
    """No actor could start (or none within --start-timeout): the cause is in the message."""

    def __init__(self, message: str, usage: bool = False) -> None:
        super().__init__(message)
        self.usage = usage
