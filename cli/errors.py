"""The one error type hubctl shows its users."""

from __future__ import annotations


class CliError(Exception):
    """Shown as one line on stderr; `exit_code` is the process's exit status."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code
