"""The supervisor of a host process project: `python -m agent.supervise --dir DIR -- ARGV...`.

The agent starts one per host process project (agent/processes.py), detached in its own
session, so it outlives the agent and is adopted by the next one. It starts the server (ARGV,
with the environment it was given), writes each line the server prints (stdout and stderr) to
DIR/server.log, rotated at --rotate-bytes with --keep older files (server.log.1 is the newest
of them), forwards SIGTERM and SIGINT to the server, writes the server's pid to
DIR/server.pid and, when the server exits, its exit status to DIR/exit (negative: killed by
that signal), and exits with it.

With --standby it is started ahead of need (agent/launcher.py) and waits for its orders: one
JSON line on stdin ({"dir", "rotate_bytes", "keep", "command", "env"}) makes it that
supervisor at once, without a Python start-up on the way to the server; end of input (the
agent went away) makes it exit.

Standard library only: it runs for as long as the server does, whatever happens to the agent's
packages meanwhile.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import BinaryIO

LOG_FILE = "server.log"
SERVER_FILE = "server.pid"
EXIT_FILE = "exit"
ROTATE_BYTES = 10 * 1024 * 1024
KEEP = 3
LINE_BYTES = 64 * 1024  # a longer "line" is written in pieces of this size
NOT_STARTED = 127
READ_AFTER_EXIT_S = 2.0  # for the last lines once the server exited


class RotatingLog:
    """Lines appended to `path`; past `limit` bytes it moves to path.1 (path.1 to path.2, ...,
    `keep` old files) and starts afresh. A write that fails (a full disk) drops the line: the
    server must never block on its output, nor lose its supervisor to a disk fault: a rotation
    that fails goes on appending to the file it has."""

    def __init__(self, path: Path, limit: int, keep: int) -> None:
        self.path = path
        self.limit = max(1, limit)
        self.keep = max(0, keep)
        self.file: BinaryIO = open(path, "ab")  # noqa: SIM115 (open for the process's life)
        self.size = self.file.tell()
        self.lock = threading.Lock()  # the reader's lines and the supervisor's last word

    def write(self, line: bytes) -> None:
        with self.lock:
            try:
                if self.size and self.size + len(line) > self.limit:
                    self.rotate()
                self.file.write(line)
                self.file.flush()
                self.size += len(line)
            except (OSError, ValueError):
                pass

    def rotate(self) -> None:
        try:
            for index in range(self.keep - 1, 0, -1):
                older = self.path.with_name(f"{self.path.name}.{index}")
                if older.exists():
                    os.replace(older, self.path.with_name(f"{self.path.name}.{index + 1}"))
            if self.keep:
                os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
            fresh: BinaryIO = open(self.path, "wb")  # noqa: SIM115
        except OSError:
            self.size = 0  # keep appending where it is; try again after another `limit`
            return
        self.file.close()
        self.file, self.size = fresh, 0


def write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def note(path: Path, text: str) -> None:
    """A status file the agent reads; a disk fault must not end the supervision."""
    with contextlib.suppress(OSError):
        write_atomically(path, text)


def pump(output: BinaryIO, log: RotatingLog) -> None:
    while line := output.readline(LINE_BYTES):
        log.write(line)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m agent.supervise")
    parser.add_argument("--standby", action="store_true", help="wait for orders on stdin")
    parser.add_argument("--dir", type=Path, help="the project's directory")
    parser.add_argument("--rotate-bytes", type=int, default=ROTATE_BYTES)
    parser.add_argument("--keep", type=int, default=KEEP, help="rotated log files kept")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the server's argv")
    args = parser.parse_args(argv)
    if args.command[:1] == ["--"]:
        args.command = args.command[1:]
    if not args.standby and (args.dir is None or not args.command):
        parser.error("--dir DIR and a server command after -- are needed (or --standby)")
    args.env = None
    return args


def orders(args: argparse.Namespace) -> bool:
    """On standby: wait for the one line that says what to supervise; False at end of input."""
    line = sys.stdin.buffer.readline()
    if not line.strip():
        return False
    given = json.loads(line)
    args.dir = Path(given["dir"])
    args.rotate_bytes, args.keep = int(given["rotate_bytes"]), int(given["keep"])
    args.command = [str(arg) for arg in given["command"]]
    args.env = {str(k): str(v) for k, v in given["env"].items()}
    devnull = os.open(os.devnull, os.O_RDONLY)  # the agent's pipe is not kept open
    os.dup2(devnull, 0)
    os.close(devnull)
    os.chdir(args.dir)
    return True


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    if args.standby and not orders(args):
        return 0
    directory: Path = args.dir
    log = RotatingLog(directory / LOG_FILE, args.rotate_bytes, args.keep)
    server: list[subprocess.Popen[bytes]] = []
    received: list[int] = []

    def forward(signum: int, _frame: object) -> None:
        received.append(signum)
        for process in server:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        process = subprocess.Popen(
            args.command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, cwd=directory, env=args.env,
        )  # fmt: skip
    except OSError as exc:
        log.write(f"gpufleet: cannot start {args.command[0]}: {exc.strerror or exc}\n".encode())
        note(directory / EXIT_FILE, f"{NOT_STARTED}\n")
        return NOT_STARTED
    server.append(process)
    note(directory / SERVER_FILE, f"{process.pid}\n")
    if received:  # a signal that came before there was a server to forward it to
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, received[-1])
    # The output is copied by a thread so the server's exit is seen when it happens, even
    # when a child it left behind still holds its stdout open.
    reader = threading.Thread(target=pump, args=(process.stdout, log), daemon=True)
    reader.start()
    status = process.wait()
    reader.join(READ_AFTER_EXIT_S)  # its last lines
    how = f"exit status {status}" if status >= 0 else f"signal {-status}"
    log.write(f"gpufleet: the server exited ({how})\n".encode())
    note(directory / EXIT_FILE, f"{status}\n")
    return status if status >= 0 else 128 - status


if __name__ == "__main__":
    sys.exit(main())
