"""Requests bound to a replica's endpoint, ended when a new table drops that endpoint (its
node went down, or the model stopped there) rather than waiting on a server that is gone.

Like asyncio.timeout: the request's task is cancelled, and the cancellation turns into
ReplicaGone where the binding ends, unless the task was cancelled for another reason too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from gateway.follow import Routes
from gateway.table import Table


class ReplicaGone(Exception):
    """The routing table no longer has the endpoint this request was sent to."""


@dataclass(eq=False)
class Binding:
    task: asyncio.Task[object]
    dropped: bool = False


class Bindings:
    def __init__(self, routes: Routes) -> None:
        self._bound: dict[str, set[Binding]] = {}
        routes.listeners.append(self._table)

    def count(self, endpoint: str) -> int:
        return len(self._bound.get(endpoint, ()))

    @contextmanager
    def bound(self, endpoint: str) -> Iterator[None]:
        task = asyncio.current_task()
        assert task is not None, "bound() runs in a task"
        binding = Binding(task)
        self._bound.setdefault(endpoint, set()).add(binding)
        try:
            yield
        except asyncio.CancelledError:
            if binding.dropped and task.uncancel() == 0:
                raise ReplicaGone(f"{endpoint} left the routing table") from None
            raise
        finally:
            bindings = self._bound.get(endpoint)
            if bindings is not None:
                bindings.discard(binding)
                if not bindings:
                    del self._bound[endpoint]

    def _table(self, table: Table) -> None:
        present = {r.endpoint for r in table.replicas if r.endpoint}
        for endpoint, bindings in self._bound.items():
            if endpoint in present:
                continue
            for binding in bindings:
                if not binding.dropped:
                    binding.dropped = True
                    binding.task.cancel()
