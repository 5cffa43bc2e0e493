"""CPU-heavy work off the hub's event loop: bounded lanes of worker processes, a hard time limit.

Placement (CP-SAT above all) and parsing configurations can take seconds; on the event loop they
would stall every stream and call of the hub. A `Lane` runs such work in a few long-lived worker
processes (spawned, not forked: the hub runs gRPC threads), so it cannot hold the hub's GIL, at a
lower CPU priority than the hub. Each call has a hard time limit: a worker that overruns is
killed (and replaced at the next call), so a runaway solver cannot keep a core for ever. A lane
takes `workers` calls at once and lets at most `waiting` more wait for a worker; any further call
is refused at once with `Busy` (RESOURCE_EXHAUSTED at the API) instead of queueing without bound.

Workers die with the hub: they read their requests from a pipe whose end is the hub's (EOF ends
them), and on Linux the kernel kills them when the hub dies (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any, Protocol, TypeVar, cast

log = logging.getLogger(__name__)
T = TypeVar("T")
NICENESS = 10  # workers yield the CPU to the hub's event loop (and to hubctl on its host)
PR_SET_PDEATHSIG = 1


class Busy(Exception):
    """Every worker of the lane is taken and its waiting room is full."""

    def __init__(self, what: str, running: int, waiting: int) -> None:
        super().__init__(
            f"the hub is busy with {what} ({running} running, {waiting} waiting): "
            "try again in a moment"
        )


class Overrun(Exception):
    """The work did not finish within its hard time limit; its worker was killed."""

    def __init__(self, what: str, limit_s: float, hint: str = "") -> None:
        super().__init__(
            f"{what} did not finish within {limit_s:g} s and was stopped"
            + (f": {hint}" if hint else "")
        )


class WorkerDied(Exception):
    """The worker process ended without an answer (killed, out of memory, crashed)."""


class Worker(Protocol):
    def call(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any: ...
    def kill(self) -> None: ...


def _die_with_parent() -> None:
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _serve(conn: Connection, parent: int) -> None:
    """A worker's loop: run each (fn, args) and send back ("ok", value) or ("error", parts)."""
    _die_with_parent()
    if os.getppid() != parent:  # the hub died before the death signal was armed
        return
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the hub handles ^C and stops its workers
    with contextlib.suppress(OSError):
        os.nice(NICENESS)
    while True:
        try:
            fn, args = conn.recv()
        except (EOFError, OSError):
            return
        try:
            reply: tuple[str, Any] = ("ok", fn(*args))
        except Exception as exc:  # sent back and raised again in the hub
            reply = ("error", (type(exc), exc.args, dict(vars(exc))))
        try:
            conn.send(reply)
        except (TypeError, AttributeError, ValueError) as exc:  # an unpicklable answer
            conn.send(("error", (WorkerDied, (f"cannot send the answer back: {exc}",), {})))
        except (EOFError, OSError):
            return


def _rebuild(parts: tuple[type[BaseException], tuple[Any, ...], dict[str, Any]]) -> BaseException:
    """The worker's exception as the hub's (also classes whose __init__ takes other arguments)."""
    cls, args, attrs = parts
    exc = cls.__new__(cls)
    exc.args = args
    exc.__dict__.update(attrs)
    return exc


class ProcessWorker:
    """One spawned worker process and its pipe."""

    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe()
        self.process = context.Process(
            target=_serve, args=(child, os.getpid()), name="gpufleet-hub-worker", daemon=True
        )
        self.process.start()
        child.close()

    def call(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        """Blocking: run fn(*args) in the worker (from a thread, never the event loop)."""
        try:
            self.conn.send((fn, args))
            kind, value = self.conn.recv()
        except (EOFError, OSError, BrokenPipeError):
            raise WorkerDied(f"worker process {self.process.pid} ended without an answer") from None
        if kind == "error":
            raise _rebuild(value)
        return value

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(5)
        self.conn.close()


class Lane:
    """`workers` worker processes for one kind of work, at most `waiting` calls waiting."""

    def __init__(
        self,
        what: str,
        workers: int,
        waiting: int,
        start: Callable[[], Worker] = ProcessWorker,
    ) -> None:
        if workers < 1 or waiting < 0:
            raise ValueError("a lane needs at least one worker and a waiting room of 0 or more")
        self.what = what
        self.workers = workers
        self.waiting = waiting
        self._start = start
        self._idle: list[Worker] = []
        self._slots = asyncio.Semaphore(workers)
        self._admitted = 0  # running + waiting
        self._busy: set[Worker] = set()
        self._closed = False
        self.refused = 0
        self.overruns = 0

    @property
    def running(self) -> int:
        return min(self._admitted, self.workers)

    async def run(self, fn: Callable[..., T], *args: Any, limit_s: float, hint: str = "") -> T:
        """fn(*args) in a worker within limit_s seconds of running (waiting not counted).

        Raises Busy at once when the lane is full, Overrun when the limit passed (the worker is
        killed), WorkerDied when the worker ended, or what fn raised."""
        if self._admitted >= self.workers + self.waiting:
            self.refused += 1
            raise Busy(self.what, self.running, self._admitted - self.running)
        self._admitted += 1
        try:
            async with self._slots:
                return await self._run(fn, args, limit_s, hint)
        finally:
            self._admitted -= 1

    async def _run(self, fn: Callable[..., T], args: tuple[Any, ...], limit_s: float,
                   hint: str) -> T:  # fmt: skip
        try:
            worker = self._idle.pop() if self._idle else await asyncio.to_thread(self._start)
        except OSError as exc:  # out of processes or memory
            raise WorkerDied(f"{self.what}: cannot start a worker process: {exc}") from None
        self._busy.add(worker)
        healthy = False
        try:
            call = asyncio.ensure_future(asyncio.to_thread(worker.call, fn, args))
            done, _ = await asyncio.wait({call}, timeout=limit_s)
            if not done:
                self.overruns += 1
                log.warning("%s overran its %g s limit: worker stopped", self.what, limit_s)
                await asyncio.to_thread(worker.kill)  # the blocked call ends with WorkerDied
                with contextlib.suppress(WorkerDied):
                    await call
                raise Overrun(self.what, limit_s, hint)
            try:
                result = call.result()
            except WorkerDied:
                raise WorkerDied(
                    f"{self.what} stopped: its worker process ended without an answer "
                    "(out of memory?); try again"
                ) from None
            except BaseException:
                healthy = True  # fn raised: the worker itself is fine
                raise
            healthy = True
            return cast(T, result)
        finally:
            self._busy.discard(worker)
            if healthy:
                self._idle.append(worker)
            else:
                await asyncio.to_thread(worker.kill)

    async def warm(self) -> None:
        """Start one worker ahead, so that the lane's first call does not wait for a process
        to spawn (a second or more on a loaded machine); nothing when one is already there.
        A worker that cannot start now is left to the first call."""
        if self._idle or self._busy or self._closed:
            return
        try:
            worker = await asyncio.to_thread(self._start)
        except OSError as exc:
            log.warning("%s: cannot start a worker ahead: %s", self.what, exc)
            return
        if self._closed or len(self._idle) + len(self._busy) >= self.workers:
            await asyncio.to_thread(worker.kill)  # closed meanwhile, or calls started theirs
            return
        self._idle.append(worker)

    def close(self) -> None:
        """Stop every worker (the hub is stopping): running calls end with WorkerDied."""
        self._closed = True
        for worker in [*self._idle, *self._busy]:
            worker.kill()
        self._idle.clear()
        self._busy.clear()


class Work:
    """The hub's lanes: configurations (parse and validate), model definitions (read, estimate,
    validate) and placement. Workers start at a lane's first call, or ahead (`prestart`)."""

    def __init__(
        self,
        configs: Lane | None = None,
        placement: Lane | None = None,
        models: Lane | None = None,
    ) -> None:
        self.configs = configs or Lane("reading configurations", workers=2, waiting=8)
        self.placement = placement or Lane("placement", workers=1, waiting=1)
        self.models = models or Lane("reading models", workers=2, waiting=8)
        self._warming: set[asyncio.Future[None]] = set()

    def prestart(self) -> None:
        """Start a configurations worker in the background (from the hub's loop, at start):
        a `switch` right after a hub start does not wait for it to spawn."""
        task = asyncio.ensure_future(self.configs.warm())
        self._warming.add(task)
        task.add_done_callback(self._warming.discard)

    def close(self) -> None:
        for task in self._warming:
            task.cancel()
        self.configs.close()
        self.placement.close()
        self.models.close()
