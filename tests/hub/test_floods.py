"""Floods of anonymous attempts stay cheap: a token bucket per peer host, and refused attempts
counted in one audit row per peer, result and minute."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hub.store import migrate, sqlite_url
from hub.store.db import make_engine
from hub.store.trust import AuditEntry, TrustStore
from hub.trust.floods import OTHER_PEERS, PeerLimiter, RefusalTally, peer_host, retry_in

T0 = datetime(2026, 11, 30, 13, 20, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    ("peer", "host"),
    [
        ("ipv4:127.0.0.1:51234", "127.0.0.1"),
        ("ipv6:[::1]:51234", "::1"),
        ("ipv6:[fe80::1%eth0]:7", "fe80::1%eth0"),
        ("unix:/run/hub.sock", "unix:/run/hub.sock"),
    ],
)
def test_peer_host_drops_the_port(peer: str, host: str) -> None:
    assert peer_host(peer) == host


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_bucket_allows_a_burst_then_one_per_interval_per_peer() -> None:
    clock = Clock()
    limiter = PeerLimiter(burst=3, per_second=0.5, clock=clock)
    assert [limiter.take("10.0.0.1") for _ in range(3)] == [0, 0, 0]
    wait = limiter.take("10.0.0.1")
    assert wait == pytest.approx(2.0) and retry_in(wait) == 2
    assert limiter.take("10.0.0.2") == 0  # another peer has its own bucket
    clock.now += 2.0
    assert limiter.take("10.0.0.1") == 0 and limiter.take("10.0.0.1") > 0
    limiter.refund("10.0.0.1")  # a good join gives its attempt back
    assert limiter.take("10.0.0.1") == 0


def test_the_limiter_forgets_refilled_peers_and_bounds_its_memory() -> None:
    clock = Clock()
    limiter = PeerLimiter(burst=1, per_second=1.0, clock=clock, most=2)
    limiter.take("a")
    limiter.take("b")
    assert limiter.take("c") == 0  # full: "c" shares the bucket of the other peers
    assert limiter.take("d") > 0
    clock.now += 5
    assert limiter.take("e") == 0  # a and b refilled and were forgotten
    assert OTHER_PEERS not in limiter._buckets


def refused(at: datetime, peer: str = "ipv4:10.0.0.9:4000", result: str = "UNAUTHENTICATED"
            ) -> AuditEntry:  # fmt: skip
    return AuditEntry(at=at, identity="anonymous", peer=peer, action="Enrollment/Join",
                      detail="", result=result, message="invalid join token")  # fmt: skip


def test_refusals_are_counted_per_peer_result_and_minute() -> None:
    tally = RefusalTally(most=2)
    first, one = tally.count(refused(T0))
    second, two = tally.count(refused(T0 + timedelta(seconds=30), peer="ipv4:10.0.0.9:4001"))
    assert (one, two) == (1, 2)
    assert second.at == T0.replace(second=0) and second.peer == "10.0.0.9"
    assert second.message == (
        "2 refused attempts from 10.0.0.9 13:20-13:21; last: invalid join token"
    )
    assert tally.count(refused(T0, result="RESOURCE_EXHAUSTED"))[1] == 1
    assert tally.count(refused(T0, peer="ipv4:10.0.0.7:1"))[0].peer == OTHER_PEERS
    next_minute, count = tally.count(refused(T0 + timedelta(minutes=1)))
    assert count == 1 and next_minute.at == T0.replace(second=0) + timedelta(minutes=1)
    assert first.message.startswith("1 refused attempt from 10.0.0.9")


def test_the_store_keeps_one_row_per_peer_and_minute(tmp_path: Path) -> None:
    engine = make_engine(sqlite_url(tmp_path))
    migrate(engine)
    store = TrustStore(engine)
    tally = RefusalTally()
    for second in range(50):
        store.audit(tally.count(refused(T0 + timedelta(seconds=second % 50)))[0])
    store.audit(tally.count(refused(T0 + timedelta(minutes=1)))[0])
    ok = AuditEntry(at=T0, identity="node/gpu-a", peer="ipv4:10.0.0.9:1", action="Enrollment/Join",
                    detail="", result="OK", message="")  # fmt: skip
    store.audit(ok)
    rows = store.audit_log(100)
    assert [(r.identity, r.message.split(" from")[0]) for r in rows] == [
        ("node/gpu-a", ""),
        ("anonymous", "1 refused attempt"),
        ("anonymous", "50 refused attempts"),
    ]
    engine.dispose()
