"""Health probes of a gateway running on its own (`modelyard gateway`); inference, OIP health
and /metrics are answered by the gateway's own ASGI app in front of this one."""

from __future__ import annotations

import msgspec
from litestar import get
from litestar.types import ControllerRouterHandler


class Health(msgspec.Struct):
    status: str


@get("/livez", tags=["health"])
async def livez() -> Health:
    return Health("ok")


def gateway_health_routes() -> list[ControllerRouterHandler]:
    return [livez]
