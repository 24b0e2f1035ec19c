"""Everything the registry serves over HTTP, in one list for the composition root: the REST API
(`/api/v1`), the MLflow dialect, the console (`/ui`) and the health probes. `/metrics` comes
with `RegistryMetricsPlugin` (metrics.py)."""

from __future__ import annotations

from typing import Any, Final

from litestar import Request, Response, get
from litestar.openapi.datastructures import ResponseSpec
from litestar.types import ControllerRouterHandler

from contract.health import Health, health_of
from registry.errors import RegistryError
from registry.web.api.app import api_routes
from registry.web.console.app import console_routes
from registry.web.mlflow.api import mlflow_router, unserved_routers
from registry.web.state import web_of


@get("/livez", tags=["health"])
async def livez() -> Health:
    return Health("ok")


NOT_READY: Final = {
    503: ResponseSpec(
        Health,
        generate_examples=False,  # random values would make the document differ per start
        description="starting (served versions on their way, listed) or"
        " unavailable (the store does not answer)",
    ),
}


@get("/readyz", tags=["health"], responses=NOT_READY)
async def readyz(request: Request[Any, Any, Any]) -> Response[Health]:
    """200 once the store answers and, after a start, every served version answers (or has
    failed: it is listed, and does not hold the others back); else 503 saying what it waits
    for. The body lists the served versions that do not answer now."""
    web = web_of(request)
    try:
        await web.registry.store.head("system")
    except RegistryError as exc:
        return Response(Health("unavailable", exc.message), status_code=503)
    rollouts = "leading" if web.rollout_scheduler.leading else "standby"
    body, status = health_of(web.readiness, rollouts)
    return Response(body, status_code=status)


def registry_routes() -> list[ControllerRouterHandler]:
    """The MLflow catch-alls come after the served MLflow routes, which win over them."""
    api, links = api_routes()
    return [api, mlflow_router(), *unserved_routers(), links, livez, readyz, *console_routes()]
