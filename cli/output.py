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
    bool,
    typer.Option("--detach", help="Print only the operation id (OP=$(hubctl ...)) and return."),
]
# One form for naming nodes everywhere: --node gpu-a --node gpu-b, or --node gpu-a,gpu-b;
# --nodes and -n are the same option.
NodeOption = Annotated[
    list[str] | None,
    typer.Option("--node", "--nodes", "-n", metavar="NODE",
                 help="A node name (repeatable, or a,b).", show_default=False),
]  # fmt: skip
LimitOption = Annotated[
    int | None,
    typer.Option("--limit", min=1, show_default=False,
                 help="At most this many rows (the hub is asked for no more)."),
]  # fmt: skip
LINK_STATUSES = ("ready", "down")
NODE_STATES = ("stopped", "switching", "loading", "ready", "failed", "draining")
GPU_STATES = ("ok", "lost")
StatusOption = Annotated[
    list[str] | None,
    typer.Option("--status", metavar="STATUS", show_default=False,
                 help="Only nodes whose link is ready or down (repeatable, or a,b)."),
]  # fmt: skip
StateOption = Annotated[
    list[str] | None,
    typer.Option("--state", metavar="STATE", show_default=False,
                 help=f"Only nodes in these switch states: {', '.join(NODE_STATES)}."),
]  # fmt: skip
SelectorOption = Annotated[
    list[str] | None,
    typer.Option("--selector", "-l", metavar="SELECTOR", show_default=False,
                 help="Only nodes with these labels: key=value, key!=value, key, !key "
                 "(repeatable, or a,b; all must hold)."),
]  # fmt: skip


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


def plural(count: int, noun: str) -> str:
    """'1 certificate', '2 certificates', '0 certificates'."""
    return f"{count} {noun}" + ("" if count == 1 else "s")


def node_names(nodes: list[str] | None) -> list[str]:
    """--node values as names: `--node a --node b` and `--node a,b` alike."""
    found = [name.strip() for item in nodes or [] for name in item.split(",")]
    if any(not name for name in found):
        raise CliError("empty node name in --node: give names such as --node gpu-a,gpu-b", 2)
    return found


def choices(flag: str, items: list[str] | None, allowed: tuple[str, ...]) -> list[str]:
    """Filter values (repeated, or a,b), each one of `allowed`: checked before any call, a bad
    one refused here, one line, exit 2."""
    found = [value.strip() for item in items or [] for value in item.split(",")]
    for value in found:
        if value not in allowed:
            raise CliError(f"invalid {flag} {value!r}: one of {', '.join(allowed)}", exit_code=2)
    return found


def selector(items: list[str] | None) -> list[str]:
    """-l values, checked before any call: a bad one is refused here, one line, exit 2."""
    if not items:
        return []
    from gpufleet.selectors import SelectorError, parse

    try:
        return [str(requirement) for requirement in parse(items)]
    except SelectorError as exc:
        raise CliError(str(exc), exit_code=2) from None


def detached(operation_id: str, as_json: bool) -> None:
    """What --detach prints: the id alone on stdout (`OP=$(hubctl switch ... --detach)`), or
    {"id": ...} with --json; how to follow it goes to stderr."""
    if as_json:
        emit_json({"id": operation_id})
    else:
        print(operation_id)
    print(f"operation {operation_id} started: hubctl ops watch {operation_id}", file=sys.stderr)


def group_json(ctx: typer.Context, as_json: bool) -> None:
    """A group's own --json lists (`hubctl tokens --json`); given before a subcommand it would
    be silently ignored, so it is refused with where it goes."""
    if as_json and ctx.invoked_subcommand is not None:
        raise CliError(
            f"--json goes after the subcommand: {ctx.command_path} "
            f"{ctx.invoked_subcommand} --json", exit_code=2
        )  # fmt: skip
