"""hubctl usage against a Hub API that serves GetGpuUsage from a real database (the hub's own
mixin on a grpc.aio server on loopback, plaintext): the table, --json, filters, --raw, and one
line for a bad --since."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest

from cli.output import CliError
from cli.usage import since_moment
from gpufleet.v1 import hub_pb2_grpc
from hub.store import Database, migrate, sqlite_url
from hub.telemetry import Retention
from tests.hub.test_telemetry_api import HOUR, UsageHub, fill
from tests.support.procs import REPO


class Served:
    """The Hub API on its own event loop in a thread, so that hubctl can run as a process."""

    def __init__(self, db: Database) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server, self.port = asyncio.run_coroutine_threadsafe(
            self._start(db), self.loop
        ).result(30)

    async def _start(self, db: Database) -> tuple[grpc.aio.Server, int]:
        server = grpc.aio.server()
        hub = UsageHub(db, Retention(raw=timedelta(hours=2), keep=timedelta(days=7)))
        hub_pb2_grpc.add_HubServicer_to_server(hub, server)  # type: ignore[no-untyped-call]
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        return server, port

    def hubctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "cli", "--hub", f"127.0.0.1:{self.port}", "--insecure",
             "usage", *args],
            capture_output=True, text=True, timeout=60, cwd=REPO, env=dict(os.environ),
        )  # fmt: skip

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(0), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Served]:
    db = Database(sqlite_url(tmp_path))
    migrate(db.engine)
    fill(db)
    served = Served(db)
    yield served
    served.close()
    db.close()


def iso(at_s: int) -> str:
    return datetime.fromtimestamp(at_s, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def test_the_table_lists_each_gpu_hour_by_hour(hub: Served) -> None:
    result = hub.hubctl("--since", iso(HOUR - 3600))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    header = lines[0].split()
    assert header[:5] == ["NODE", "GPU", "HOUR", "(UTC)", "SAMPLES"]
    rows = [line.split() for line in lines[1:-1]]
    assert len(rows) == 12  # by hour, node, GPU
    assert [(r[0], r[1]) for r in rows[:6]] == [(n, g) for n in ("gpu-a", "gpu-b", "gpu-c")
                                                for g in ("0", "1")]  # fmt: skip
    hour = datetime.fromtimestamp(HOUR - 3600, UTC).strftime("%Y-%m-%d %H:%M").split()
    assert rows[0][:5] == ["gpu-a", "0", *hour, "60"]
    assert rows[0][6:] == ["1.0/1.0", "50", "C", "200", "W"]  # memory GiB avg/max, temp, power
    assert rows[6][2:5] == [*datetime.fromtimestamp(HOUR, UTC).strftime("%Y-%m-%d %H:%M").split(),
                            "20"]  # the current hour, so far  # fmt: skip
    assert lines[-1] == "The hub keeps raw samples for 2h and hours for 7d."


def test_json_with_names_labels_and_raw(hub: Served) -> None:
    result = hub.hubctl("-n", "gpu-b", "--since", iso(HOUR), "--json")
    found: list[dict[str, Any]] = json.loads(result.stdout)
    assert [(r["node"], r["gpu"], r["start"], r["samples"]) for r in found] == [
        ("gpu-b", 0, iso(HOUR), 20), ("gpu-b", 1, iso(HOUR), 20)]  # fmt: skip
    assert found[1]["memory_used_max_mb"] == 2000 and found[1]["span_s"] == 3600
    chat = json.loads(hub.hubctl("-l", "role=chat", "--raw", "--since", iso(HOUR + 1140),
                                 "--json").stdout)  # fmt: skip
    assert [(r["node"], r["gpu"], r["span_s"]) for r in chat] == [
        ("gpu-a", 0, 0), ("gpu-a", 1, 0), ("gpu-c", 0, 0), ("gpu-c", 1, 0)]  # fmt: skip


def test_limit_stops_after_that_many_rows(hub: Served) -> None:
    result = hub.hubctl("--since", iso(HOUR - 3600), "--limit", "5")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1 + 5 + 1  # the header, five rows, what the hub keeps
    assert [line.split()[:2] for line in lines[1:3]] == [["gpu-a", "0"], ["gpu-a", "1"]]
    found = json.loads(hub.hubctl("--raw", "--since", iso(HOUR), "--limit", "3", "--json").stdout)
    assert [(r["node"], r["gpu"], r["start"]) for r in found] == [
        ("gpu-a", 0, iso(HOUR)), ("gpu-a", 1, iso(HOUR)), ("gpu-b", 0, iso(HOUR))]  # fmt: skip


def test_nothing_matching_says_so(hub: Served) -> None:
    result = hub.hubctl("-n", "gpu-z")
    assert (result.returncode, result.stdout.splitlines()[0]) == (
        0, "No GPU usage matches --node gpu-z.")  # fmt: skip


@pytest.mark.parametrize("since", ["yesterday", "6 h", "2026-13-01", "-3h"])
def test_a_bad_since_is_one_line_and_exit_2(hub: Served, since: str) -> None:
    result = hub.hubctl("--since", since)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith(f"hubctl: --since {since!r} is neither a span")
    assert len(result.stderr.splitlines()) == 1


def test_since_forms() -> None:
    now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    assert since_moment("6h", now) == now - timedelta(hours=6)
    assert since_moment("2d", now) == now - timedelta(days=2)
    assert since_moment("2026-12-01", now) == datetime(2026, 12, 1, tzinfo=UTC)
    assert since_moment("2026-12-01T10:00+01:00", now) == datetime(2026, 12, 1, 9, tzinfo=UTC)
    with pytest.raises(CliError):
        since_moment("soon", now)
