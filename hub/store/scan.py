"""Filtered listings in key order: a page of the rows that pass a filter the database cannot
run (label selectors over the JSON labels column), read in bounded chunks."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

R = TypeVar("R")
K = TypeVar("K")
CHUNK = 1000  # rows read at a time while looking for matches


def kept(
    fetch: Callable[[K, int], Sequence[R]],
    key: Callable[[R], K],
    after: K,
    keep: Callable[[R], bool],
    limit: int | None,
    chunk: int = CHUNK,
) -> list[R]:
    """Up to `limit` (None: every) rows after `after` that `keep` accepts, in key order.

    `fetch(after, n)` reads at most n rows whose key follows `after`, in order; `key(row)` is
    a row's key. A page continues after the key of its last row, as an unfiltered one does,
    so page tokens need not say which filter made them."""
    found: list[R] = []
    while True:
        rows = fetch(after, chunk)
        found += [row for row in rows if keep(row)]
        if len(rows) < chunk or (limit is not None and len(found) >= limit):
            return found if limit is None else found[:limit]
        after = key(rows[-1])
