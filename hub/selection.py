"""Label selectors on the Hub API: listings filtered by them, and which nodes an operation's
Targets name (`-l role=chat`, alone or with --node or --all)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc

from gpufleet.selectors import Requirement, SelectorError, describe, matches, parse

Context = grpc.aio.ServicerContext[Any, Any]
Selector = tuple[Requirement, ...]


async def selector(items: Iterable[str], context: Context) -> Selector:
    """The request's selector; a bad one is refused with INVALID_ARGUMENT and one line."""
    try:
        return parse(items)
    except SelectorError as exc:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        raise


def label_filter(chosen: Selector) -> Callable[[Mapping[str, str]], bool] | None:
    """What the store filters a listing's nodes with; None (no filter) for no selector."""
    if not chosen:
        return None
    return lambda labels: matches(chosen, labels)


@dataclass(frozen=True)
class Known:
    """A node as targeting sees it."""

    name: str
    connected: bool
    labels: Mapping[str, str] = field(default_factory=dict)


class NoMatch(Exception):
    """Targets that select no node, or name nodes the selector excludes; one line."""


def targeted(
    names: Sequence[str], every: bool, chosen: Selector, known: Sequence[Known]
) -> list[str]:
    """The nodes an operation runs on.

    No selector: the named nodes, or every known node (--all). With a selector: alone, every
    connected node that matches; with --all, every known node that matches; with names,
    those names, each of which must match. Unknown names are left for the operation manager
    to refuse."""
    if not chosen:
        return [k.name for k in known] if every else list(names)
    wanted = describe(chosen)
    if names:
        labels = {k.name: k.labels for k in known}
        excluded = [n for n in names if n in labels and not matches(chosen, labels[n])]
        if excluded:
            raise NoMatch(
                f"{', '.join(excluded[:5])} {'does' if len(excluded) == 1 else 'do'} not match "
                f"{wanted}: `hubctl nodes -l {wanted}` lists the nodes that do"
            )
        return list(names)
    found = [k.name for k in known if (every or k.connected) and matches(chosen, k.labels)]
    if not found:
        which = "node" if every else "connected node"
        raise NoMatch(
            f"no {which} matches {wanted}: `hubctl nodes` shows each node's labels and status"
        )
    return found
