"""The audit log's writes: one transaction per turn of the loop, in order, refusals counted
in their row, and the entries of streams ended by a stop written before the database closes."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
from sqlalchemy import event

from hub.server import HubConfig, HubServer
from hub.store import Database, migrate
from hub.store.db import make_engine
from hub.store.trust import AuditEntry, TrustStore
from hub.trust.audit_log import AuditLog
from hub.trust.floods import RefusalTally
from tests.hub.test_link_pace import welcomed

T0 = datetime(2026, 12, 1, 6, 0, 5, tzinfo=UTC)
CONNECT = "AgentLink/Connect"


def entry(i: int, result: str = "STARTED") -> AuditEntry:
    return AuditEntry(at=T0 + timedelta(milliseconds=i), identity=f"node/n{i}",
                      peer=f"ipv4:10.0.0.{i % 250}:1", action=CONNECT, result=result)  # fmt: skip


def refused(second: int) -> AuditEntry:
    return AuditEntry(at=T0 + timedelta(seconds=second), identity="anonymous",
                      peer="ipv4:10.9.9.9:5", action="Enrollment/Join",
                      result="PERMISSION_DENIED", message="invalid join token")  # fmt: skip


def test_the_entries_of_one_turn_are_one_transaction_in_order(tmp_path: Path) -> None:
    async def main() -> None:
        db = Database(f"sqlite:///{tmp_path / 'hub.db'}")
        await db.call(migrate, db.engine)
        store = TrustStore(db.engine)
        commits: list[int] = []
        event.listen(db.engine, "commit", lambda _connection: commits.append(1))
        audit, tally = AuditLog(db, store), RefusalTally()
        for i in range(1000):  # a reconnect storm's stream starts, three refusals among them
            audit.record(entry(i))
            if i in (10, 500, 990):
                audit.record(tally.count(refused(i // 100))[0])
        await asyncio.sleep(0)  # the end of this turn
        rows = await db.call(store.audit_log, 2000)
        db.close()
        assert len(commits) == 1
        plain = [r.identity for r in reversed(rows) if r.identity != "anonymous"]
        assert plain == [f"node/n{i}" for i in range(1000)]
        counted = [r for r in rows if r.identity == "anonymous"]
        assert [r.message.split(" from")[0] for r in counted] == ["3 refused attempts"]
        ids = {r.identity: r.id or 0 for r in rows}
        assert ids["node/n10"] < ids["anonymous"] < ids["node/n11"]  # where it first came

    asyncio.run(main())


def test_outside_a_loop_an_entry_is_written_at_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    db = Database(url)
    migrate(db.engine)
    AuditLog(db, TrustStore(db.engine)).record(entry(1, "OK"))
    db.close()  # waits for the queued write
    engine = make_engine(url)
    assert [r.result for r in TrustStore(engine).audit_log(10)] == ["OK"]
    engine.dispose()


def test_the_streams_a_stop_ends_are_audited_before_the_database_closes(tmp_path: Path) -> None:
    async def main() -> None:
        config = HubConfig("127.0.0.1:0", tmp_path, insecure=True)
        server = HubServer(config)
        await server.start()
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            await welcomed(channel, ("a", "b", "c"))
            await server.stop(grace=1)
        db = Database(config.database_url)  # the database as the stop left it
        try:
            rows = await db.call(TrustStore(db.engine).audit_log, 100)
        finally:
            db.close()
        results = sorted(r.result for r in rows if r.action == CONNECT)
        assert results.count("STARTED") == 3 and len(results) == 6  # each begun and ended

    asyncio.run(main())
