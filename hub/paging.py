"""Paged listings on the wire: a request's page size, the key it continues after, and its
filters."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol, TypeVar

import grpc

from hub import limits, listing
from hub.selection import selector
from hub.store.listing import Filter

Context = grpc.aio.ServicerContext[Any, Any]
T = TypeVar("T")


class PageRequest(Protocol):
    @property
    def page_size(self) -> int: ...
    @property
    def page_token(self) -> str: ...


async def paged(request: PageRequest, context: Context, parts: int) -> tuple[int, tuple[str, ...]]:
    """Page size (default and most: limits.PAGE_SIZE) and the key a page token continues
    after (() for the first page); a bad one is refused with INVALID_ARGUMENT."""
    try:
        return limits.page(request.page_size, request.page_token, parts)
    except limits.OutOfBounds as exc:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        raise


def next_token(rows: Sequence[T], size: int, key: Callable[[T], tuple[str | int, ...]]) -> str:
    """Read `size + 1` rows: when the extra one came, the token continues after row `size`."""
    return limits.Page.token(*key(rows[size - 1])) if len(rows) > size else ""


async def filters(
    request: listing.Filtered,
    context: Context,
    live: listing.Live,
    states: Iterable[str] = (),
    gpu_states: Iterable[str] = (),
) -> Filter:
    """A listing request's filters (label selector, names, link status, switch or GPU
    states); a bad one is refused with INVALID_ARGUMENT and one line naming what is allowed."""
    chosen = await selector(request.selector, context)
    try:
        return listing.chosen(request, chosen, live, states, gpu_states)
    except limits.OutOfBounds as exc:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        raise
