"""The starts a scaler is planning: one per model, outside its lock, shared by every caller.

A start's planning (the models lane) may take seconds; while it runs the model is `starting`
on its nodes, those nodes are held from other starts, and the model is never idle. The entry
goes once the start was submitted (then the operation says all that) or refused.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, Generic, TypeVar

from hub.gateway.routes import Starting
from hub.models import deploy

T = TypeVar("T")


class Pending(Generic[T]):
    def __init__(self, submitted: Callable[[], None]) -> None:
        self._starts: dict[str, tuple[asyncio.Task[T], tuple[str, ...]]] = {}
        self._submitted = submitted  # called when a start was submitted

    def __contains__(self, model: str) -> bool:
        return model in self._starts

    def get(self, model: str) -> asyncio.Task[T] | None:
        found = self._starts.get(model)
        return found[0] if found is not None else None

    def begin(self, model: str, nodes: list[str],
              start: Coroutine[Any, Any, T]) -> asyncio.Task[T]:  # fmt: skip
        """Run `start` in the background: the task every caller for `model` shares."""
        task = asyncio.create_task(start, name=f"gateway-start-{model}")
        self._starts[model] = (task, tuple(nodes))

        def done(ended: asyncio.Task[T]) -> None:
            if self.get(model) is ended:
                del self._starts[model]
            if not ended.cancelled() and ended.exception() is None:
                self._submitted()

        task.add_done_callback(done)
        return task

    def starting(self) -> dict[str, Starting]:
        """model -> its start being planned."""
        return {
            model: Starting("", nodes, f"starting on {', '.join(nodes)}")
            for model, (_, nodes) in self._starts.items()
        }

    def held(self) -> dict[str, str]:
        """node -> the project a start being planned takes it for."""
        return {
            node: deploy.project(model)
            for model, (_, nodes) in self._starts.items()
            for node in nodes
        }
