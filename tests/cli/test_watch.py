"""`hubctl gpus --watch` on a real pseudo-terminal: redraws in place as values change."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import signal
import struct
import sys
import termios
import time

import pytest

from tests.support.procs import INVENTORIES, REPO, Cluster


def read_until(fd: int, needle: bytes, timeout: float, seen: bytearray) -> bool:
    deadline = time.monotonic() + timeout
    while needle not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                seen += os.read(fd, 65536)
            except OSError:  # the child closed the terminal
                break
    return needle in seen


@pytest.mark.parametrize("db_url", [None], ids=["sqlite"])
def test_watch_redraws_in_place_and_ctrl_c_exits(cluster: Cluster) -> None:
    inventory = cluster.tmp / "host.yaml"
    inventory.write_text((INVENTORIES / "a5500-a400.yaml").read_text())
    cluster.agent("gpu-a", extra=["--inventory", str(inventory)]).start()
    cluster.wait_status({"gpu-a": "ready"})

    pid, fd = pty.fork()
    if pid == 0:  # the child: hubctl on the terminal
        os.chdir(REPO)
        argv = [sys.executable, "-m", "cli", "--hub", cluster.address, "gpus", "--watch",
                "--interval", "0.3"]  # fmt: skip
        env = {
            **os.environ,
            "TERM": "xterm-256color",
            "GPUFLEET_CONFIG": str(cluster.hubctl_config),
        }
        os.execvpe(argv[0], argv, env)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
    seen = bytearray()
    status: int | None = None
    try:
        assert read_until(fd, b"18.9/24 GiB", 30, seen), seen.decode(errors="replace")
        inventory.write_text(inventory.read_text().replace("memory_used_mb: 19304",
                                                           "memory_used_mb: 1024"))  # fmt: skip
        assert read_until(fd, b"1/24 GiB", 30, seen), seen.decode(errors="replace")
        os.kill(pid, signal.SIGINT)
        _, status = os.waitpid(pid, 0)
    finally:
        if status is None:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(fd)
    text = seen.decode(errors="replace")
    assert os.waitstatus_to_exitcode(status) == 0
    assert "\x1b[" in text and "A" in text.split("1/24 GiB")[0]  # cursor moved up: in place
    assert "Traceback" not in text
