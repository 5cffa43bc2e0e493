"""How long the hub keeps its history: raw telemetry, hourly aggregates, and the audit log,
events, transitions and finished operations. Durations are given as 90s, 30m, 1h, 14d."""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from datetime import timedelta

DURATION = re.compile(r"^\s*(\d{1,7})\s*([smhd])\s*$")
UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class BadDuration(ValueError):
    """Not a duration; the message says what is expected."""


def duration(text: str, field: str) -> timedelta:
    """'90s', '30m', '1h', '14d' as a timedelta; BadDuration (naming `field`) otherwise."""
    found = DURATION.match(text)
    if found is None:
        raise BadDuration(f"{field} {text[:64]!r} is not a duration: a number and s, m, h or d "
                          "(e.g. 1h, 14d)")  # fmt: skip
    return timedelta(seconds=int(found[1]) * UNIT_S[found[2]])


def argument(text: str) -> timedelta:
    """An argparse type: a duration, or argparse's one line for a bad one."""
    try:
        return duration(text, "")
    except BadDuration as exc:
        raise argparse.ArgumentTypeError(str(exc).strip()) from None


@dataclass(frozen=True)
class Retention:
    """raw: raw samples (folded into their hours within minutes); keep: hourly aggregates;
    history: the audit log, node events and transitions, finished operations. Whatever the
    cluster's age, the database holds `raw` of samples (and a downsampler tick more), `keep`
    of hours and `history` of the rest."""

    raw: timedelta = timedelta(hours=1)
    keep: timedelta = timedelta(days=14)
    history: timedelta = timedelta(days=90)

    def problem(self) -> str | None:
        """Why the policy is refused (one line), or None."""
        if self.raw < timedelta(minutes=5):
            return f"--telemetry-raw must be at least 5m, got {_text(self.raw)}"
        if self.keep < timedelta(hours=1):
            return f"--telemetry-keep must be at least 1h, got {_text(self.keep)}"
        if self.history < timedelta(days=1):
            return f"--history-keep must be at least 1d, got {_text(self.history)}"
        return None


DEFAULT_RETENTION = Retention()


def _text(span: timedelta) -> str:
    seconds = int(span.total_seconds())
    for unit in ("d", "h", "m"):
        if seconds and seconds % UNIT_S[unit] == 0:
            return f"{seconds // UNIT_S[unit]}{unit}"
    return f"{seconds}s"
