"""Health probes of a gateway running on its own (`modelyard gateway`); inference, OIP health
and /metrics are answered by the gateway's own ASGI app in front of this one."""

from __future__ import annotations

from litestar.types import ControllerRouterHandler

from registry.api.app import livez


def gateway_health_routes() -> list[ControllerRouterHandler]:
    return [livez]
