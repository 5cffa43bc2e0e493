"""The downsampler: every few minutes, fold the raw samples into hourly rows (the current
hour's too, refolded until it ends), then delete raw samples past the raw window, hours past
`keep`, and the other history past `history`. Each step is its own call on the database
thread (deletes in bounded slices), so heartbeat writes queue between them, never behind one
long transaction.

Folding moves a mark past which no sample may land later: it waits while the database keeps
refused writes to retry (`Database.pending`), and stops short of the oldest sample the
recorder has not written yet (an outage longer than the grace would otherwise leave them
behind the mark: never counted in their hours, then pruned)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import sqlalchemy.exc

from hub.store.db import Database, describe
from hub.store.usage import UsageStore, hour_of
from hub.telemetry import history
from hub.telemetry.policy import Retention
from hub.telemetry.recorder import TelemetryRecorder

log = logging.getLogger(__name__)

EVERY_S = 300.0
# A sample reaches the database within a flush or two of its arrival: samples are folded
# once they are this old (one that comes later still is kept raw, not counted in its hour).
GRACE_S = 120
RAW_SLICE_S = 600  # raw samples deleted ten minutes at a time
FOLD_SLICE_S = 600  # and folded ten minutes at a time


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Pruned:
    """What one tick did."""

    folded: int = 0  # samples added to their hours
    samples: int = 0
    hours: int = 0
    history: dict[str, int] = field(default_factory=dict)


class Downsampler:
    def __init__(
        self, db: Database, store: UsageStore, retention: Retention, every_s: float = EVERY_S,
        clock: Callable[[], datetime] = utcnow, recorder: TelemetryRecorder | None = None,
    ) -> None:  # fmt: skip
        self.db = db
        self.recorder = recorder
        self.store = store
        self.retention = retention
        self.every_s = every_s
        self.clock = clock

    async def tick(self) -> Pruned:
        now = self.clock()
        now_s = int(now.timestamp())
        done = Pruned()
        mark = await self._fold(self._target(now_s), done)
        # Raw samples go once past the window, and only those already folded.
        cutoff = min(now_s - int(self.retention.raw.total_seconds()), mark)
        first = await self.db.call(self.store.first_sample, 0)
        if first is not None:
            for end in range(first + RAW_SLICE_S, cutoff + RAW_SLICE_S, RAW_SLICE_S):
                done.samples += await self.db.call(self.store.prune_samples, min(end, cutoff))
        # An hour goes once it ended `keep` ago.
        keep_from = hour_of(now_s - int(self.retention.keep.total_seconds()))
        done.hours = await self.db.call(self.store.prune_usage, keep_from)
        before = now - self.retention.history
        for table in history.IN_TIME_ORDER:
            done.history[table] = await self._drain(history.prune_oldest, table, before)
        done.history["operation"] = await self._drain(history.prune_operations, before)
        if done.folded or done.samples or done.hours or any(done.history.values()):
            old = ", ".join(f"{n} {t}" for t, n in done.history.items() if n) or "none"
            log.info("telemetry: folded %d samples, deleted %d raw samples and %d hourly "
                     "rows; history deleted: %s", done.folded, done.samples, done.hours,
                     old)  # fmt: skip
        return done

    def _target(self, now_s: int) -> int | None:
        """Where folding may go now (None: nowhere while writes wait to be retried)."""
        if self.db.pending:
            return None
        held = None if self.recorder is None else self.recorder.oldest
        return now_s - GRACE_S if held is None else min(now_s - GRACE_S, held)

    async def _fold(self, target: int | None, done: Pruned) -> int:
        """Fold up to `target` a slice at a time (at most FOLD_SLICE_S of samples each, gaps
        skipped); the mark it reached (no further than it was: nothing folded yet, 0)."""
        mark = await self.db.call(self.store.mark)
        if target is None:
            return 0 if mark is None else mark
        if mark is not None and mark >= target:
            return mark
        if mark is None:  # the first fold: from the first sample
            first = await self.db.call(self.store.first_sample, 0)
            mark = target if first is None else min(first, target)
        while True:
            first = await self.db.call(self.store.first_sample, mark)
            end = target if first is None or first >= target else min(first + FOLD_SLICE_S,
                                                                       target)  # fmt: skip
            done.folded += await self.db.call(self.store.fold, mark, max(end, mark))
            mark = max(end, mark)
            if mark >= target:
                return mark

    async def _drain(self, prune: Callable[..., int], *args: object) -> int:
        """Repeat a bounded delete until it finds nothing more to delete."""
        total = 0
        while deleted := await self.db.call(prune, self.db.engine, *args):
            total += deleted
        return total

    async def run(self) -> None:
        """A tick at once (a restart folds what the last run left), then every `every_s`."""
        while True:
            try:
                await self.tick()
            except sqlalchemy.exc.SQLAlchemyError as exc:
                log.warning("telemetry downsampling failed, retried in %.0f s: %s",
                            self.every_s, describe(exc))  # fmt: skip
            await asyncio.sleep(self.every_s)
