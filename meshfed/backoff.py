"""Reconnect delays shared by every client of a control plane (zones, sidecars, ingresses)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """Exponential backoff with jitter: the delay before attempt n is drawn from
    [d/2, d] with d = min(maximum, initial * factor**n), so zones restarting together spread
    out, and a zone never waits more than `maximum`."""

    initial: float = 0.1
    maximum: float = 10.0
    factor: float = 2.0
    rng: random.Random = field(default_factory=random.Random)
    attempt: int = 0

    def next_delay(self) -> float:
        ceiling = min(self.maximum, self.initial * self.factor ** min(self.attempt, 64))
        self.attempt += 1
        return ceiling / 2 + self.rng.uniform(0, ceiling / 2)

    def reset(self) -> None:
        self.attempt = 0
