"""Gateway HTTP surface. For now the Open Inference Protocol health probes only: the gateway's
routing, proxying and rollouts land with the gateway issue."""

from __future__ import annotations

import msgspec
from litestar import get
from litestar.types import ControllerRouterHandler


class Liveness(msgspec.Struct):
    live: bool


class Readiness(msgspec.Struct):
    ready: bool


@get("/v2/health/live", tags=["inference"])
async def oip_live() -> Liveness:
    return Liveness(live=True)


@get("/v2/health/ready", tags=["inference"])
async def oip_ready() -> Readiness:
    return Readiness(ready=True)


def gateway_routes() -> list[ControllerRouterHandler]:
    return [oip_live, oip_ready]
