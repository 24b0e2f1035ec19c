"""REST: the gateways' traffic windows (reported by gateways, read by rollouts and people)."""

from __future__ import annotations

import statistics
from datetime import datetime

import msgspec
from litestar import Controller, get, post
from litestar.params import FromQuery, JSONBody

from contract.windows import WindowReport
from registry.rollouts.windows import VariantTraffic
from registry.web.api.context import PathStr, RegistryDep


class VariantSummary(msgspec.Struct):
    version: int
    variant: str
    requests: int
    errors: int
    error_rate: float
    p50_ms: float | None
    p99_ms: float | None
    samples: int


def summarize(t: VariantTraffic) -> VariantSummary:
    lat = sorted(t.latencies_ms)
    q = statistics.quantiles(lat, n=100, method="inclusive") if len(lat) >= 2 else lat * 99
    return VariantSummary(
        version=t.version,
        variant=t.variant,
        requests=t.requests,
        errors=t.errors,
        error_rate=t.errors / t.requests if t.requests else 0.0,
        p50_ms=q[49] if q else None,
        p99_ms=q[98] if q else None,
        samples=len(lat),
    )


class WindowController(Controller):
    path = "/"
    tags = ["traffic"]

    @post("/windows", status_code=204)
    async def report(self, registry: RegistryDep, data: JSONBody[WindowReport]) -> None:
        """A gateway's per-variant measurements since its previous report."""
        await registry.add_windows(data)

    @get("/models/{name:str}/windows")
    async def traffic(
        self, registry: RegistryDep, name: PathStr, since: FromQuery[datetime]
    ) -> list[VariantSummary]:
        """Live traffic per version and variant since `since`, summed over gateways."""
        return [summarize(t) for t in await registry.traffic(name, since)]
