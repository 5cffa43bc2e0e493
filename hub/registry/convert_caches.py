"""A node's model cache report (agent_link.proto CachedEntry) <-> CachedView: the one place the
cache reports are converted. A report is bounded (at most MAX_CACHES entries, strings cut); an
entry the hub cannot use (a name that is not an entry's, an unknown state or layout) is left out.
"""

from __future__ import annotations

from collections.abc import Sequence

from gpufleet.v1 import agent_link_pb2 as pb
from hub import limits
from hub.models.checks import LABEL
from hub.registry.caches import CACHE_STATES, CachedView

MAX_CACHES = 256  # entries one node may report
LAYOUTS = ("files", "hf")
MAX_PATH = 4096
MAX_REVISION = 64
MAX_REPO = 200


class TooManyCaches(ValueError):
    """A report with more entries than MAX_CACHES: a broken or hostile agent."""


def cached_from_proto(entry: pb.CachedEntry) -> CachedView | None:
    """None for an entry the hub cannot use."""
    if not LABEL.match(entry.entry) or entry.state not in CACHE_STATES:
        return None
    layout = entry.layout or "files"
    if layout not in LAYOUTS:
        return None
    return CachedView(
        entry=entry.entry,
        revision=limits.message(entry.revision, MAX_REVISION),
        size=entry.size,
        verified=entry.verified,
        state=entry.state,
        path=limits.message(entry.path, MAX_PATH),
        layout=layout,
        repo=limits.message(entry.repo, MAX_REPO),
    )


def cached_to_proto(view: CachedView) -> pb.CachedEntry:
    return pb.CachedEntry(
        entry=view.entry, revision=view.revision, size=view.size, verified=view.verified,
        state=view.state, path=view.path, layout=view.layout, repo=view.repo,
    )  # fmt: skip


def caches_from_proto(entries: Sequence[pb.CachedEntry]) -> tuple[CachedView, ...]:
    """TooManyCaches past MAX_CACHES; entries the hub cannot use are left out, and an entry
    named twice counts once (its first report)."""
    if len(entries) > MAX_CACHES:
        raise TooManyCaches(f"{len(entries)} cached entries reported (at most {MAX_CACHES}): "
                            "upgrade the agent")  # fmt: skip
    found: dict[str, CachedView] = {}
    for entry in entries:
        view = cached_from_proto(entry)
        if view is not None and view.entry not in found:
            found[view.entry] = view
    return tuple(found.values())
