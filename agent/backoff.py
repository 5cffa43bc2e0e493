"""Exponential reconnect backoff with jitter, so a restarted hub is not hit by every agent
at once."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    initial: float = 0.5
    maximum: float = 30.0
    multiplier: float = 2.0
    rng: random.Random = field(default_factory=random.Random)
    attempt: int = 0

    def next(self) -> float:
        """The next delay: the capped exponential step, scaled by a random factor in [0.5, 1]."""
        step = min(self.maximum, self.initial * self.multiplier**self.attempt)
        self.attempt += 1
        return step * (0.5 + 0.5 * self.rng.random())

    def after_link(self, window: float) -> float:
        """The first delay after a link that held was lost (the hub restarted, said goodbye,
        or the stream broke): a uniformly random part of `window` (at least the initial step,
        at most the maximum), so every agent of a large cluster does not dial the restarted
        hub within the same moment. Later failures grow from the second step on."""
        self.attempt = 1
        return self.rng.random() * min(self.maximum, max(self.initial, window))

    def reset(self) -> None:
        self.attempt = 0
