"""What an in-process gateway shows the registry's console: the route revision it serves,
whether the route feed answers, each upstream's breaker, and per-variant and shadow counts."""

from __future__ import annotations

import time

import msgspec

from contract.routes import ModelRoute
from gateway.front import Gateway


class UpstreamHealth(msgspec.Struct, frozen=True):
    endpoint: str
    breaker: str  # closed | open | half_open, or unused (no request sent to it yet)


class VariantCount(msgspec.Struct, frozen=True):
    model: str
    version: str
    variant: str
    requests: int
    errors: int


class ShadowCount(msgspec.Struct, frozen=True):
    model: str
    version: str
    compared: int
    agreed: int
    dropped: int
    failed: int

    @property
    def agreement(self) -> float | None:
        return self.agreed / self.compared if self.compared else None


class GatewayStatus(msgspec.Struct, frozen=True):
    revision: int | None  # None until the first route table arrived
    registry_up: bool
    problem: str | None
    models: list[ModelRoute]
    upstreams: list[UpstreamHealth]
    variants: list[VariantCount]
    shadows: list[ShadowCount]


def gateway_status(gateway: Gateway) -> GatewayStatus:
    follower = gateway.follower
    table = follower.table
    now = time.monotonic()
    endpoints = set(gateway.breakers)
    if table is not None:
        endpoints |= {v.endpoint for r in table.models.values() for v in r.versions.values()}
    return GatewayStatus(
        revision=table.revision if table is not None else None,
        registry_up=follower.registry_up,
        problem=follower.problem,
        models=sorted(table.models.values(), key=lambda r: r.name) if table else [],
        upstreams=[
            UpstreamHealth(e, b.state(now) if (b := gateway.breakers.get(e)) else "unused")
            for e in sorted(endpoints)
        ],
        variants=[VariantCount(*t) for t in sorted(gateway.metrics.totals())],
        shadows=[ShadowCount(*s) for s in sorted(gateway.metrics.shadow_totals())],
    )
