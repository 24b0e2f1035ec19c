"""Windows of live traffic per model, version and variant, as the gateways measure them; the
rollout judge compares candidate and baseline windows taken over the same period. Pure data."""

from __future__ import annotations

from typing import Annotated, Final

import msgspec

Count = Annotated[int, msgspec.Meta(ge=0)]
#: The longest model name, everywhere (the registry's rule of names: registry/catalog/domain.py).
MAX_MODEL_NAME: Final = 256


class TrafficWindow(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    model: Annotated[str, msgspec.Meta(max_length=MAX_MODEL_NAME)]
    version: Annotated[int, msgspec.Meta(ge=1)]
    variant: Annotated[str, msgspec.Meta(max_length=64)]
    requests: Count
    errors: Count
    latencies_ms: Annotated[list[float], msgspec.Meta(max_length=20_000)]
    compared: Count = 0  # shadow copies whose answer was compared with the primary's
    agreed: Count = 0  # ... and agreed with it


class WindowReport(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What one gateway measured since its previous report."""

    source: Annotated[str, msgspec.Meta(max_length=128)]
    windows: Annotated[list[TrafficWindow], msgspec.Meta(max_length=1000)]
