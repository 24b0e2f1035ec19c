"""Health probes of a gateway running on its own (`modelyard gateway`); inference, OIP health
and /metrics are answered by the gateway's own ASGI app in front of this one."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get
from litestar.types import ControllerRouterHandler

from registry.api.app import NOT_READY, livez, readiness_response
from registry.api.schemas import Health


@get("/readyz", tags=["health"], responses=NOT_READY)
async def readyz(request: Request[Any, Any, Any]) -> Response[Health]:
    """200 once the route table arrived and, after a start, the endpoints of the served
    versions answered (or failed, listed); else 503 saying what it waits for. The same verdict
    as /v2/health/ready, in the registry's /readyz shape."""
    return readiness_response(request.app.state.get("readiness"))


def gateway_health_routes() -> list[ControllerRouterHandler]:
    return [livez, readyz]
