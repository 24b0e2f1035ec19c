"""Health probes of a gateway running on its own (`modelyard gateway`); inference, OIP health
and /metrics are answered by the gateway's own ASGI app in front of this one."""

from __future__ import annotations

from typing import Any, Final

from litestar import Request, Response, get
from litestar.openapi.datastructures import ResponseSpec
from litestar.types import ControllerRouterHandler

from contract.health import Health, health_of

NOT_READY: Final = {
    503: ResponseSpec(
        Health,
        generate_examples=False,  # random values would make the document differ per start
        description=(
            "starting: the route table has not arrived, or the served versions' endpoints"
            " have not answered yet (listed)"
        ),
    ),
}


@get("/livez", tags=["health"])
async def livez() -> Health:
    return Health("ok")


@get("/readyz", tags=["health"], responses=NOT_READY)
async def readyz(request: Request[Any, Any, Any]) -> Response[Health]:
    """200 once the route table arrived and, after a start, the endpoints of the served
    versions answered (or failed, listed); else 503 saying what it waits for. The same verdict
    as /v2/health/ready, in the registry's /readyz shape."""
    body, status = health_of(request.app.state.get("readiness"))
    return Response(body, status_code=status)


def gateway_health_routes() -> list[ControllerRouterHandler]:
    return [livez, readyz]
