"""What the rollout judge reads of the gateways' windows: one variant's traffic summed over
gateways and time, and how long windows are kept. Pure."""

from __future__ import annotations

from datetime import datetime, timedelta

import msgspec


class VariantTraffic(msgspec.Struct, frozen=True):
    """Windows of one variant summed over gateways and time (what the judge reads)."""

    version: int
    variant: str
    requests: int
    errors: int
    latencies_ms: list[float]
    since: datetime
    compared: int = 0
    agreed: int = 0


def prune_cutoff(now: datetime, keep: timedelta, steps_started: list[datetime]) -> datetime:
    """Windows received before this may go: older than `keep`, and older than the start of
    every active rollout's current step (its judge still reads from there)."""
    return min([now - keep, *steps_started])
