"""Why a podman-compose run failed, in one line: the failing podman command and its error.

podman-compose (run with --verbose) logs each podman command it runs (`INFO:...:podman
create ...` or `INFO:...:['podman', 'network', 'create', ...]`), then that command's output,
then `exit code: N`; on some failures it prints a Python traceback instead. The root cause is
the first podman command that failed (not a probe such as `podman pod exists`) with the error
line it printed; a traceback contributes only its exception line, never its tail.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field

LOG = re.compile(r"^(?:DEBUG|INFO|WARNING|ERROR|CRITICAL):[\w.]+:(.*)$")
EXIT = re.compile(r"^exit code: (-?\d+)$")
CALLED = re.compile(r"Command '(\[.*\])' returned non-zero exit status (-?\d+)")
PROBES = {"exists", "inspect"}  # commands whose failure is an answer, not an error
COMMAND_CHARS = 160
ERROR_CHARS = 300


@dataclass
class _Run:
    command: list[str]
    output: list[str] = field(default_factory=list)


def _command(text: str) -> list[str] | None:
    """A podman command podman-compose logged, as its argv; None for other log lines."""
    text = text.strip()
    if text.startswith("['podman'") or text.startswith('["podman"'):
        try:
            argv = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return None
        return [str(arg) for arg in argv if str(arg)] if isinstance(argv, list) else None
    return text.split() if text.startswith("podman ") else None


def short(argv: list[str]) -> str:
    """The command without its labels (podman-compose adds a dozen), cut to a readable size."""
    kept: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == "--label":
            skip = True
            continue
        if not arg.startswith("--label="):
            kept.append(arg)
    text = " ".join(kept)
    return text if len(text) <= COMMAND_CHARS else text[: COMMAND_CHARS - 3] + "..."


def _probe(argv: list[str]) -> bool:
    return any(word in PROBES for word in argv[1:3])


def error_line(lines: list[str]) -> str:
    """The line that says what went wrong: the last `Error:` line, else the last line."""
    found = [line for line in lines if line.strip()]
    errors = [line for line in found if line.lstrip().startswith(("Error:", "error:"))]
    line = (errors or found or [""])[-1].strip()
    return line[:ERROR_CHARS]


def root_cause(stderr: str, stdout: str = "", code: int = 1) -> str:
    """One line: `podman ...: Error: ...` when a podman command failed, else the error line
    (an exception's message, not its traceback); `exit status N` when nothing was said."""
    runs: list[_Run] = []
    loose: list[str] = []  # output that belongs to no logged command
    exception = ""
    in_traceback = False
    for raw in (stderr + "\n" + stdout).splitlines():
        line = raw.rstrip()
        if line.startswith("Traceback (most recent call last):"):
            in_traceback = True
            continue
        if in_traceback:
            if line.startswith((" ", "\t")) or not line:
                continue
            in_traceback = False
            exception = line
            if called := CALLED.search(line):
                argv = _command(called.group(1))
                if argv is not None and not _probe(argv):
                    output = runs[-1].output if runs and runs[-1].command == argv else []
                    return f"{short(argv)}: {error_line(output) or line[:ERROR_CHARS]}"
            continue
        logged = LOG.match(line)
        if logged is None:
            (runs[-1].output if runs else loose).append(line)
            continue
        message = logged.group(1)
        if (argv := _command(message)) is not None:
            runs.append(_Run(argv))
        elif (exit_code := EXIT.match(message.strip())) and runs:
            failed = runs[-1]
            if exit_code.group(1) != "0" and not _probe(failed.command):
                error = error_line(failed.output) or f"exit status {exit_code.group(1)}"
                return f"{short(failed.command)}: {error}"
    said = [line for run in runs for line in run.output] + loose
    if exception:
        return exception[:ERROR_CHARS]
    return error_line(said) or f"exit status {code}"
