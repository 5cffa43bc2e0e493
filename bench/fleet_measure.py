"""What the hub benchmark reads while it runs: the simulators' counts, the database's size,
the hub's heartbeat counter, and how long a hubctl listing takes."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import REPO

# Attempts that never reached the hub's listener (it was down): the rest of the failed
# attempts were streams the hub cut or refused before its Welcome.
REFUSED = ("failed to connect", "Connection refused", "connections to all backends failing")


@dataclass(frozen=True)
class SimStats:
    connected: int = 0
    ever_connected: int = 0
    connects: int = 0
    failures: int = 0
    heartbeats: int = 0
    reasons: Counter[str] = field(default_factory=Counter)

    @classmethod
    def read(cls, paths: list[Path]) -> SimStats:
        total = cls()
        for path in paths:
            try:
                data = json.loads(path.read_text())
            except (OSError, ValueError):
                continue  # not written yet
            total = total + cls(
                data["connected"], data["ever_connected"], data["connects"], data["failures"],
                data["heartbeats"], Counter(data["reasons"]),
            )  # fmt: skip
        return total

    def __add__(self, other: SimStats) -> SimStats:
        return SimStats(
            self.connected + other.connected, self.ever_connected + other.ever_connected,
            self.connects + other.connects, self.failures + other.failures,
            self.heartbeats + other.heartbeats, self.reasons + other.reasons,
        )  # fmt: skip

    def since(self, before: SimStats) -> SimStats:
        reasons = Counter(self.reasons)
        reasons.subtract(before.reasons)
        return SimStats(
            self.connected, self.ever_connected, self.connects - before.connects,
            self.failures - before.failures, self.heartbeats - before.heartbeats,
            +reasons,
        )  # fmt: skip

    def cut_before_welcome(self) -> int:
        """Failed attempts that reached the hub: all failures less those refused at dial."""
        refused = sum(n for text, n in self.reasons.items() if any(r in text for r in REFUSED))
        return max(0, self.failures - refused)


def db_bytes(state_dir: Path, db_url: str | None) -> int:
    """The database's logical size: SQLite's used pages (the WAL included), or
    pg_database_size."""
    if db_url is None:
        with sqlite3.connect(f"file:{state_dir / 'hub.db'}?mode=ro", uri=True) as conn:
            pages = conn.execute("PRAGMA page_count").fetchone()[0]
            free = conn.execute("PRAGMA freelist_count").fetchone()[0]
            size = conn.execute("PRAGMA page_size").fetchone()[0]
        return int((pages - free) * size)
    import psycopg

    with psycopg.connect(db_url.replace("postgresql+psycopg", "postgresql")) as conn:
        row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
    return int(row[0]) if row else 0


def heartbeat_counter(http: str) -> float | None:
    """The sum of the hub's /metrics counters about heartbeats received; None without one."""
    try:
        with urllib.request.urlopen(f"http://{http}/metrics", timeout=10) as reply:
            text = reply.read().decode()
    except OSError:
        return None
    values = [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if not line.startswith("#") and "heartbeat" in line.split(" ", 1)[0]
        and line.split("{", 1)[0].split(" ", 1)[0].endswith("_total")
    ]  # fmt: skip
    return sum(values) if values else None


@dataclass(frozen=True)
class Listing:
    first_s: float
    end_s: float
    lines: int


def listing(argv: list[str], env: dict[str, str]) -> Listing:
    """Run a hubctl command; the time to its first output line and to its end."""
    began = time.perf_counter()
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=env, cwd=REPO)  # fmt: skip
    assert process.stdout is not None
    first = process.stdout.readline()
    first_s = time.perf_counter() - began
    rest = process.stdout.read()
    error = process.stderr.read() if process.stderr else ""
    code = process.wait()
    end_s = time.perf_counter() - began
    if code != 0:
        raise SystemExit(f"{' '.join(argv)} exited {code}: {error.strip()[-500:]}")
    return Listing(first_s if first else end_s, end_s, (first + rest).count("\n"))
