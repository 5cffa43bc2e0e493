"""GetGpuUsage (mixed into HubService): each GPU's hours, or its raw samples, from a moment
on, in the order of their keys (start, node, GPU), paged like the other listings, filtered
by node names and labels, read on the database's reader threads; a page behind a label filter
reads at most SCAN_ROWS rows (hub.store.usage) and continues where its scan stopped.

The class it is mixed into provides `db` (hub.store.Database), `usage` (UsageStore) and
`retention` (Retention)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import grpc

from gpufleet.v1 import hub_pb2
from hub import limits
from hub.paging import paged
from hub.selection import label_filter, selector
from hub.store.db import Database
from hub.store.usage import Key, UsageStore, usage_page
from hub.telemetry.convert import usage_to_proto
from hub.telemetry.policy import Retention

Context = grpc.aio.ServicerContext[Any, Any]
DEFAULT_SINCE = timedelta(hours=24)
MAX_NAMES = 1000


def page_key(after: tuple[str, ...]) -> Key | None:
    """(start, node, GPU) from a page key; OutOfBounds when it is not one of ours."""
    if not after:
        return None
    start, node, gpu = after
    if not all(part.isascii() and part.isdigit() and len(part) <= 12 for part in (start, gpu)):
        raise limits.OutOfBounds("invalid page_token: list again from the first page without one")
    return int(start), node, int(gpu)


def node_names(names: list[str]) -> list[str]:
    if len(names) > MAX_NAMES:
        raise limits.OutOfBounds(f"names has {len(names)} nodes: at most {MAX_NAMES}")
    return [limits.text("names", name, 253) for name in names]


class GpuUsageApi:
    db: Database
    usage: UsageStore
    retention: Retention

    async def GetGpuUsage(
        self, request: hub_pb2.GpuUsageRequest, context: Context
    ) -> hub_pb2.GpuUsageResponse:
        size, after = await paged(request, context, 3)
        try:
            key, names = page_key(after), node_names(list(request.names))
        except limits.OutOfBounds as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            raise
        keep = label_filter(await selector(request.selector, context))
        if request.HasField("since"):
            since_s = max(0, request.since.seconds)
        else:
            since_s = int((datetime.now(UTC) - DEFAULT_SINCE).timestamp())
        # On a reader thread: a long page never holds up the writes of heartbeats.
        rows, following = await self.db.read(
            usage_page, since_s, key, size, names, keep, request.raw
        )
        return hub_pb2.GpuUsageResponse(
            usage=[usage_to_proto(row) for row in rows],
            next_page_token="" if following is None else limits.Page.token(*following),
            raw_window_s=int(self.retention.raw.total_seconds()),
            keep_s=int(self.retention.keep.total_seconds()),
        )
