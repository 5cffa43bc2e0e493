"""systemd's service notification protocol (sd_notify), with no dependency.

A daemon started by a `Type=notify` unit finds $NOTIFY_SOCKET, an AF_UNIX datagram socket
(a name starting with "@" is in the abstract namespace), and sends newline-separated
assignments: READY=1 once it serves, WATCHDOG=1 at least every $WATCHDOG_USEC, STOPPING=1
when it begins to stop, STATUS=... for `systemctl status`. Outside systemd nothing is set
and every call does nothing.

`Notifier.from_environment()` removes these variables from the environment, as
sd_notify(unset_environment=1) does, so that processes the daemon starts (podman, conmon)
never write to the daemon's socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator, MutableMapping

log = logging.getLogger(__name__)

_VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


def socket_address(name: str) -> str | bytes:
    """$NOTIFY_SOCKET as a socket address: "@name" is the abstract name b"\\0name"."""
    if name.startswith("@"):
        return b"\0" + name[1:].encode()
    return name


def watchdog_interval(env: MutableMapping[str, str], pid: int) -> float | None:
    """How often to send WATCHDOG=1 (half the timeout), or None when no watchdog is asked."""
    usec = env.get("WATCHDOG_USEC", "")
    owner = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if owner and owner != str(pid):
        return None  # the watchdog belongs to another process (our parent, say)
    return int(usec) / 2_000_000


class Notifier:
    """Sends notifications to systemd; does nothing when not started by systemd."""

    def __init__(self, address: str | None, watchdog_s: float | None = None) -> None:
        self.address = address or None
        self.watchdog_s = watchdog_s if self.address else None
        self._ready = False
        self._stopping = False

    @classmethod
    def from_environment(
        cls, env: MutableMapping[str, str] | None = None, unset: bool = True
    ) -> Notifier:
        env = os.environ if env is None else env
        notifier = cls(env.get("NOTIFY_SOCKET"), watchdog_interval(env, os.getpid()))
        if unset:
            for name in _VARIABLES:
                env.pop(name, None)
        return notifier

    def send(self, *assignments: str) -> bool:
        """Send one datagram; False (and a debug log) when it cannot be delivered."""
        if not self.address:
            return False
        message = "\n".join(assignments).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(socket_address(self.address))
                sock.sendall(message)
        except OSError as exc:
            log.debug("cannot notify systemd at %s: %s", self.address, exc)
            return False
        return True

    def ready(self, status: str = "") -> None:
        """READY=1 the first time; later calls only update STATUS."""
        extra = (f"STATUS={status}",) if status else ()
        if self._ready:
            if extra:
                self.send(*extra)
            return
        self._ready = True
        self.send("READY=1", *extra)

    def status(self, status: str) -> None:
        self.send(f"STATUS={status}")

    def stopping(self) -> None:
        """STOPPING=1, once."""
        if not self._stopping:
            self._stopping = True
            self.send("STOPPING=1", "STATUS=stopping")

    async def feed_watchdog(self) -> None:
        """Send WATCHDOG=1 every half timeout, from the event loop: a stuck loop starves it."""
        if self.watchdog_s is None:
            return
        while True:
            self.send("WATCHDOG=1")
            await asyncio.sleep(self.watchdog_s)

    async def _stopping_when(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self.stopping()

    @contextlib.asynccontextmanager
    async def serving(self, stop: asyncio.Event) -> AsyncIterator[Notifier]:
        """Feed the watchdog while inside; send STOPPING=1 as soon as `stop` is set."""
        jobs = [
            asyncio.create_task(self.feed_watchdog(), name="sd-watchdog"),
            asyncio.create_task(self._stopping_when(stop), name="sd-stopping"),
        ]
        try:
            yield self
        finally:
            for job in jobs:
                job.cancel()
            await asyncio.gather(*jobs, return_exceptions=True)
            if stop.is_set():
                self.stopping()  # when the body saw `stop` before the task did
