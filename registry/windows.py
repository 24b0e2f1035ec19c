"""Windows of live traffic per model, version and variant, as the gateways measure them; the
rollout judge compares candidate and baseline windows taken over the same period. Pure data."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

import msgspec

Count = Annotated[int, msgspec.Meta(ge=0)]


class TrafficWindow(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    model: Annotated[str, msgspec.Meta(max_length=128)]
    version: Annotated[int, msgspec.Meta(ge=1)]
    variant: Annotated[str, msgspec.Meta(max_length=64)]
    requests: Count
    errors: Count
    latencies_ms: Annotated[list[float], msgspec.Meta(max_length=20_000)]
    compared: Count = 0  # shadow copies whose answer was compared with the primary's
    agreed: Count = 0  # ... and agreed with it


def prune_cutoff(now: datetime, keep: timedelta, steps_started: list[datetime]) -> datetime:
    """Windows received before this may go: older than `keep`, and older than the start of
    every active rollout's current step (its judge still reads from there)."""
    return min([now - keep, *steps_started])


class WindowReport(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What one gateway measured since its previous report."""

    source: Annotated[str, msgspec.Meta(max_length=128)]
    windows: Annotated[list[TrafficWindow], msgspec.Meta(max_length=1000)]


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
