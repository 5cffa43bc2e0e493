"""What keeps a flood of anonymous attempts cheap: a token bucket per peer address for
enrollment, and refused anonymous calls counted per peer per minute in the audit log
(one row updated, not one row per attempt). Memory is bounded: past `most` peers, the rest
share one key."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from hub.store.trust import AuditEntry

OTHER_PEERS = "other peers"
MOST_PEERS = 4096


def peer_host(peer: str) -> str:
    """gRPC's peer without its port: 'ipv4:127.0.0.1:5123' -> '127.0.0.1', 'ipv6:[::1]:5'
    -> '::1'; attempts from one host count together whatever port they come from."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv6" and rest.startswith("["):
        return rest[1:].partition("]")[0]
    if kind == "ipv4":
        return rest.rpartition(":")[0] or rest
    return peer[:128]


@dataclass
class _Bucket:
    tokens: float
    at: float


class PeerLimiter:
    """A token bucket per peer host: `burst` attempts at once, then `per_second`."""

    def __init__(
        self, burst: float, per_second: float, clock: Callable[[], float], most: int = MOST_PEERS
    ) -> None:
        self.burst, self.rate, self.clock, self.most = burst, per_second, clock, most
        self._buckets: dict[str, _Bucket] = {}

    def _bucket(self, host: str, now: float) -> _Bucket:
        bucket = self._buckets.get(host)
        if bucket is None:
            if len(self._buckets) >= self.most:
                self._prune(now)
            if len(self._buckets) >= self.most:
                host = OTHER_PEERS
            bucket = self._buckets.setdefault(host, _Bucket(self.burst, now))
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.at) * self.rate)
        bucket.at = now
        return bucket

    def _prune(self, now: float) -> None:
        """Forget peers whose bucket has refilled: they are as good as new."""
        for host, bucket in list(self._buckets.items()):
            if bucket.tokens + (now - bucket.at) * self.rate >= self.burst:
                del self._buckets[host]

    def take(self, host: str) -> float:
        """Take one attempt: 0 when allowed, else the seconds until the next one is."""
        bucket = self._bucket(host, self.clock())
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return 0.0
        return (1 - bucket.tokens) / self.rate

    def refund(self, host: str) -> None:
        """An attempt that succeeded does not count against its peer."""
        bucket = self._bucket(host, self.clock())
        bucket.tokens = min(self.burst, bucket.tokens + 1)


def retry_in(seconds: float) -> int:
    return max(1, math.ceil(seconds))


class RefusalTally:
    """Refused anonymous calls per (peer host, action, result) per minute. `count` turns each
    into the one audit row of its minute: `at` is the minute, `message` says how many."""

    def __init__(self, most: int = MOST_PEERS) -> None:
        self.most = most
        self._minute: datetime | None = None
        self._counts: dict[tuple[str, str, str], int] = {}

    def count(self, entry: AuditEntry) -> tuple[AuditEntry, int]:
        minute = entry.at.replace(second=0, microsecond=0)
        if minute != self._minute:
            self._minute, self._counts = minute, {}
        host = peer_host(entry.peer)
        key = (host, entry.action, entry.result)
        if key not in self._counts and len(self._counts) >= self.most:
            host = OTHER_PEERS
            key = (host, entry.action, entry.result)
        count = self._counts[key] = self._counts.get(key, 0) + 1
        end = (minute + timedelta(minutes=1)).strftime("%H:%M")
        text = (
            f"{count} refused attempt{'s' if count > 1 else ''} from {host} "
            f"{minute:%H:%M}-{end}; last: {entry.message}"
        )[:1000]
        fields = {"at": minute, "peer": host, "message": text}
        return AuditEntry(**{**entry.model_dump(exclude={"id"}), **fields}), count
