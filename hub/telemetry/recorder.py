"""Every GPU telemetry sample the hub receives, buffered in memory and written in batches:
one executemany per flush on the database thread, never more than one batch queued there.
While a batch waits (the database is slow or refuses writes) samples keep arriving into a
bounded buffer that drops its oldest, counted in `dropped`. `oldest` says how far back the
samples not yet in the database go: the downsampler folds no further."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.exc import OperationalError

from hub.store.db import Database
from hub.store.store import BAD_ROW, GpuTelemetryRecord
from hub.store.usage import Sample, UsageStore

log = logging.getLogger(__name__)

FLUSH_S = 10.0
MAX_BUFFERED = 100_000  # samples (about 20 MiB): 2.5 rounds of 10,000 agents' 4 GPUs


class TelemetryRecorder:
    def __init__(self, db: Database, store: UsageStore, flush_s: float = FLUSH_S,
                 max_buffered: int = MAX_BUFFERED) -> None:  # fmt: skip
        self.db = db
        self.store = store
        self.flush_s = flush_s
        self._buffer: deque[Sample] = deque(maxlen=max_buffered)
        self._in_flight = False  # a batch is queued on the database thread
        self._in_flight_from: int | None = None  # its oldest sample's time
        self.dropped = 0  # samples lost: the buffer overflowed, or a batch was refused
        self.written = 0  # samples written

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    @property
    def oldest(self) -> int | None:
        """The time (epoch seconds) of the oldest sample not yet written: buffered, or in the
        batch queued on the database thread (kept there while the database refuses writes).
        None when every sample received is written."""
        held = [at for at in (self._in_flight_from, self._buffer[0][2] if self._buffer else None)
                if at is not None]  # fmt: skip
        return min(held, default=None)

    def record(self, node: str, samples: Sequence[GpuTelemetryRecord], at: datetime) -> None:
        """Buffer one heartbeat's samples (on the event loop; no I/O)."""
        at_s = int(at.timestamp())
        buffer = self._buffer
        assert buffer.maxlen is not None
        self.dropped += max(0, len(buffer) + len(samples) - buffer.maxlen)
        buffer.extend(
            (node, s.index, at_s, s.state, s.utilization_percent, s.memory_used_mb,
             s.temperature_c, s.power_draw_w)
            for s in samples
        )  # fmt: skip

    def flush(self, final: bool = False) -> int:
        """Queue the buffered samples as one write, unless the last one has not landed yet
        (`final`: queue them anyway, at shutdown before the database closes)."""
        if not self._buffer or (self._in_flight and not final):
            return 0
        batch = list(self._buffer)
        self._buffer.clear()
        self._in_flight = True
        first = min(sample[2] for sample in batch)
        # (`final`: a batch may follow one that has not landed yet)
        held = self._in_flight_from
        self._in_flight_from = first if held is None else min(held, first)
        self.db.submit(self._write, batch, landed=self._landed)
        return len(batch)

    def _write(self, batch: list[Sample]) -> None:
        """On the database thread. A storage fault propagates (Database keeps the batch and
        retries it); a refused row loses this batch only, logged and counted."""
        try:
            self.store.add_samples(batch)
        except BAD_ROW as exc:
            if isinstance(exc, OperationalError):
                raise
            log.error("%d telemetry samples not written: %s", len(batch), str(exc)[:300])
            self.dropped += len(batch)
            return
        self.written += len(batch)

    def _landed(self) -> None:
        self._in_flight = False
        self._in_flight_from = None

    async def run(self) -> None:
        """Flush every `flush_s` until cancelled."""
        while True:
            await asyncio.sleep(self.flush_s)
            self.flush()
