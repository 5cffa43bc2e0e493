"""Enrollment on the agent's side: `gpufleet-agent join`, and `--token` at the first start.

The join token is a secret: it can come from a file (`--token-file PATH`, `-` for stdin) or
the environment (`GPUFLEET_JOIN_TOKEN`) so that it never shows in `ps`. Precedence:
--token-file, else --token (or `token:` in the config file), else $GPUFLEET_JOIN_TOKEN.
A successful join remembers the hub's address in the state dir (`STATE_DIR/hub`), so the
next start needs no --hub; a --hub flag, `hub:` in the config file or $GPUFLEET_HUB still win.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import socket
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NoReturn, TextIO

from agent.credentials import AgentTls
from agent.identity import check_name
from gpufleet.enroll import EnrollError, join
from gpufleet.tls import split_address

log = logging.getLogger("agent")

TOKEN_ENV = "GPUFLEET_JOIN_TOKEN"
HUB_ENV = "GPUFLEET_HUB"
DEFAULT_HUB = "localhost:7443"
HUB_FILE = "hub"
UNIT = "gpufleet-agent.service"
UNIT_DIRS = ("/etc/systemd/system", "/usr/lib/systemd/system", "/lib/systemd/system",
             "/usr/local/lib/systemd/system")  # fmt: skip


def fail(message: str) -> NoReturn:
    print(f"gpufleet-agent: {message}", file=sys.stderr)
    sys.exit(2)


def add_token_options(parser: argparse.ArgumentParser, help_text: str) -> None:
    parser.add_argument("--token", metavar="TOKEN", help=f"{help_text} (visible in ps: prefer "
                        f"--token-file or ${TOKEN_ENV})")  # fmt: skip
    parser.add_argument(
        "--token-file", metavar="PATH",
        help=f"read the join token from PATH (- for stdin); wins over --token and ${TOKEN_ENV}",
    )  # fmt: skip


def given(argv: Sequence[str], option: str) -> bool:
    return any(arg == option or arg.startswith(f"{option}=") for arg in argv)


def read_token(args: argparse.Namespace, environ: Mapping[str, str] = os.environ,
               stdin: TextIO | None = None, argv: Sequence[str] | None = None
               ) -> str | None:  # fmt: skip
    """The join token by precedence; one line and exit 2 when a named file is no good.
    Flags win over the config file: a --token typed beats a `token_file:` from the file."""
    argv = sys.argv[1:] if argv is None else argv
    typed_token = given(argv, "--token") and not given(argv, "--token-file")
    if args.token_file and not typed_token:
        where = "stdin" if args.token_file == "-" else args.token_file
        try:
            if args.token_file == "-":
                text = (stdin or sys.stdin).read()
            else:
                text = Path(args.token_file).read_text()
        except OSError as exc:
            fail(f"cannot read --token-file {where}: {exc.strerror or exc}")
        except UnicodeDecodeError:
            fail(f"--token-file {where} is not text: write the token from `hubctl tokens "
                 "create` into it")  # fmt: skip
        if not text.strip():
            fail(f"--token-file {where} is empty: write the token from `hubctl tokens create` "
                 "into it")  # fmt: skip
        return text.strip()
    if args.token:
        return str(args.token)
    return environ.get(TOKEN_ENV, "").strip() or None


def resolve_hub(given: str | None, state_dir: Path, environ: Mapping[str, str] = os.environ
                ) -> str:  # fmt: skip
    """--hub or `hub:` in the config file, else the hub this state dir joined (its
    certificate is that hub's), else $GPUFLEET_HUB, else localhost:7443."""
    if given:
        return given
    return remembered_hub(state_dir) or environ.get(HUB_ENV) or DEFAULT_HUB


def remembered_hub(state_dir: Path) -> str | None:
    """The address `join` kept in STATE_DIR/hub; None (with a warning) for a file that is
    not one HOST:PORT line."""
    path = state_dir / HUB_FILE
    try:
        lines = path.read_text().strip().splitlines()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeError) as exc:
        log.warning("ignoring %s: %s", path, getattr(exc, "strerror", None) or exc)
        return None
    try:
        if len(lines) != 1 or any(c.isspace() for c in lines[0]):
            raise ValueError(f"{path} is not one HOST:PORT line")
        split_address(lines[0])
    except ValueError as exc:
        log.warning("ignoring %s: %s; pass --hub (join writes it again)", path, exc)
        return None
    return lines[0]


def remember_hub(state_dir: Path, hub: str) -> None:
    try:
        (state_dir / HUB_FILE).write_text(hub + "\n")
    except OSError as exc:
        log.warning("cannot remember the hub in %s: %s", state_dir, exc.strerror)


def unit_installed(dirs: Sequence[str] = UNIT_DIRS) -> bool:
    return any((Path(folder) / UNIT).is_file() for folder in dirs)


def start_hint(state_dir: Path, unit: bool) -> str:
    """What starts the agent now: the packaged unit, or the command itself (pip install)."""
    if unit:
        return "start the agent: systemctl start gpufleet-agent"
    command = shlex.join(["gpufleet-agent", "--state-dir", str(state_dir)])
    return f"start the agent: {command}"


def enroll(args: argparse.Namespace, tls: AgentTls, token: str) -> str:
    """Join with `token`; the enrolled node name. The hub's address is remembered."""
    name = args.name or socket.gethostname().split(".")[0]
    try:
        enrolled = join(args.hub, token, check_name(name), args.enroll_port)
        tls.save(enrolled)
    except (EnrollError, ValueError) as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot write {tls.dir}: {exc.strerror}: choose a writable --state-dir")
    remember_hub(args.state_dir, args.hub)
    labels = ",".join(f"{k}={v}" for k, v in sorted(enrolled.labels.items()))
    log.info("enrolled as %s%s", enrolled.identity, f" with labels {labels}" if labels else "")
    return name


NO_TOKEN = (
    "no join token: pass --token-file PATH (- for stdin) or set $GPUFLEET_JOIN_TOKEN (or "
    "--token T, visible in ps), with a token from `hubctl tokens create`"
)


def join_command(args: argparse.Namespace) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args.hub = resolve_hub(args.hub, args.state_dir)
    tls = AgentTls(args.state_dir)
    if tls.enrolled:
        fail(
            f"this host is already enrolled as {tls.node_name()} ({tls.dir}); to enroll "
            f"again, remove it on the hub (hubctl nodes remove {tls.node_name()}) and "
            f"delete {tls.dir}"
        )
    token = read_token(args)
    if token is None:
        fail(NO_TOKEN)
    name = enroll(args, tls, token)
    print(f"joined {args.hub} as node {name}; {start_hint(args.state_dir, unit_installed())}")
