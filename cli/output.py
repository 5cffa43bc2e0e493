"""What every hubctl command shares: the console, --json, common options, one-line errors.

Cheap to import (typer only), like every command module: rich, gRPC and the stubs load
inside the commands that use them, so `hubctl --help` pays for none of them.
"""

from __future__ import annotations

import json
import re
import sys
from functools import cache
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from rich.console import Console

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
DetachOption = Annotated[
    bool, typer.Option("--detach", help="Print the operation id and return at once.")
]


class CliError(Exception):
    """Shown as one line on stderr; `exit_code` is the process's exit status."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@cache
def console() -> Console:
    """Piped output (grep, logs) keeps one row per line instead of wrapping at 80 columns."""
    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else 220)


def emit_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2) + "\n")


LONG_WORD = re.compile(r"\S{161,}")


def error_line(message: str) -> None:
    """How hubctl reports any failure: one line on stderr. A huge value that the line
    quotes back (a 5000-character name) is cut so that the reason and the fix stay readable."""
    shown = LONG_WORD.sub(lambda m: f"{m.group()[:80]}...({len(m.group())} characters)", message)
    print(f"hubctl: {' '.join(shown.splitlines())}", file=sys.stderr)


def first_line(text: str | None) -> str:
    """One line for the user; the hub's log has the rest."""
    return (text or "").strip().splitlines()[0] if (text or "").strip() else ""


def hub_address(ctx: typer.Context) -> str:
    """The hub this invocation talks to (--hub, $GPUFLEET_HUB or the config's default)."""
    address: str = ctx.obj["hub"]
    return address
