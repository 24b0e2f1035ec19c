"""Windows of live traffic per model, version and variant, as the gateways measure them; the
rollout judge compares candidate and baseline windows taken over the same period. Pure data."""

from __future__ import annotations

from typing import Annotated, Final

import msgspec

#: The longest model name, everywhere (the registry's rule of names: registry/catalog/domain.py).
MAX_MODEL_NAME: Final = 256
# bounded so that sums over many windows stay exact in a float and fit a BIGINT column; a
# latency above a day is a measuring error, not a slow answer
MAX_COUNT = 2**53
MAX_LATENCY_MS = 86_400_000.0
Count = Annotated[int, msgspec.Meta(ge=0, le=MAX_COUNT)]
LatencyMs = Annotated[float, msgspec.Meta(ge=0.0, le=MAX_LATENCY_MS)]


class TrafficWindow(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    model: Annotated[str, msgspec.Meta(max_length=MAX_MODEL_NAME)]
    version: Annotated[int, msgspec.Meta(ge=1, le=2**63 - 1)]
    variant: Annotated[str, msgspec.Meta(max_length=64)]
    requests: Count
    errors: Count
    latencies_ms: Annotated[list[LatencyMs], msgspec.Meta(max_length=20_000)]
    compared: Count = 0  # shadow copies whose answer was compared with the primary's
    agreed: Count = 0  # ... and agreed with it


class WindowReport(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What one gateway measured since its previous report."""

    source: Annotated[str, msgspec.Meta(max_length=128)]
    windows: Annotated[list[TrafficWindow], msgspec.Meta(max_length=1000)]
