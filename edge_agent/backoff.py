"""Capped exponential backoff with full jitter, shared by every retry loop in the agent.

Pure: the caller owns the clock and the sleeping, so the policy is trivially testable.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass(slots=True)
class Backoff:
    """Delays grow base * factor**n up to `cap`; `jitter` (0..1) is the share randomised down.

    Full jitter (jitter=1.0) spreads reconnecting agents apart so a recovering service is not
    hit by every bench at the same instant.
    """

    base: float = 0.2
    cap: float = 5.0
    factor: float = 2.0
    jitter: float = 0.0
    attempts: int = 0
    rng: random.Random = field(default_factory=random.Random)

    def next_delay(self) -> float:
        raw = min(self.cap, self.base * (self.factor**self.attempts))
        self.attempts += 1
        if self.jitter <= 0:
            return raw
        return raw * (1.0 - self.jitter) + raw * self.jitter * self.rng.random()

    def reset(self) -> None:
        self.attempts = 0
