"""A circuit breaker per upstream (outlier ejection): after `threshold` consecutive failures
the upstream is ejected for `cooldown_s`; then one trial request may pass (half-open), and a
success closes it again. Pure: the caller passes the time."""

from __future__ import annotations

from typing import Final

CLOSED: Final = "closed"
OPEN: Final = "open"
HALF_OPEN: Final = "half_open"

DEFAULT_THRESHOLD: Final = 5
DEFAULT_COOLDOWN_S: Final = 5.0


class Breaker:
    __slots__ = ("cooldown_s", "failures", "opened_at", "threshold", "trial_out")

    def __init__(
        self, threshold: int = DEFAULT_THRESHOLD, cooldown_s: float = DEFAULT_COOLDOWN_S
    ) -> None:
        self.threshold = threshold
        self.cooldown_s = cooldown_s
        self.failures = 0
        self.opened_at: float | None = None
        self.trial_out = False

    def state(self, now: float) -> str:
        if self.opened_at is None:
            return CLOSED
        return HALF_OPEN if now - self.opened_at >= self.cooldown_s else OPEN

    def allow(self, now: float) -> bool:
        state = self.state(now)
        if state == CLOSED:
            return True
        if state == HALF_OPEN and not self.trial_out:
            self.trial_out = True
            return True
        return False

    def success(self) -> None:
        self.failures, self.opened_at, self.trial_out = 0, None, False

    def failure(self, now: float) -> None:
        self.failures += 1
        self.trial_out = False
        if self.opened_at is not None or self.failures >= self.threshold:
            self.opened_at = now
