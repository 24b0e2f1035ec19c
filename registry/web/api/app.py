"""Assemble the registry's routes; the composition root mounts them in an app."""

from __future__ import annotations

from typing import Any, Final

from litestar import Request, Response, Router, get
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi.datastructures import ResponseSpec
from litestar.types import ControllerRouterHandler

from contract.health import Health, ReadinessSource, health_of
from registry.catalog.service import Registry
from registry.errors import RegistryError
from registry.web.api.aliases import AliasController
from registry.web.api.audit import AuditController
from registry.web.api.bentos import BentoController, local_download
from registry.web.api.context import role_guard
from registry.web.api.deployments import DeploymentController
from registry.web.api.experiments import ExperimentController
from registry.web.api.metrics import registry_metrics
from registry.web.api.models import ModelController
from registry.web.api.rollouts import RolloutController
from registry.web.api.tokens import TokenController, WhoAmIController
from registry.web.api.traffic import TrafficController
from registry.web.api.versions import VersionController
from registry.web.api.windows import WindowController
from registry.web.mlflow.api import mlflow_router, unserved_routers


@get("/livez", tags=["health"])
async def livez() -> Health:
    return Health("ok")


NOT_READY: Final = {
    503: ResponseSpec(Health, description="starting (served versions on their way, listed) or"
                      " unavailable (the store does not answer)"),
}  # fmt: skip


@get("/readyz", tags=["health"], responses=NOT_READY)
async def readyz(request: Request[Any, Any, Any]) -> Response[Health]:
    """200 once the store answers and, after a start, every served version answers (or has
    failed: it is listed, and does not hold the others back); else 503 saying what it waits
    for. The body lists the served versions that do not answer now."""
    registry: Registry = request.app.state.registry
    try:
        await registry.store.head("system")
    except RegistryError as exc:
        return Response(Health("unavailable", exc.message), status_code=503)
    controller = request.app.state.get("rollout_scheduler")
    rollouts = None if controller is None else ("leading" if controller.leading else "standby")
    return readiness_response(request.app.state.get("readiness"), rollouts)


def readiness_response(
    source: ReadinessSource | None, rollouts: str | None = None
) -> Response[Health]:
    body, status = health_of(source, rollouts)
    return Response(body, status_code=status)


def _state(name: str) -> Provide:
    def provide(state: State) -> Any:
        return state[name]

    return Provide(provide, sync_to_thread=False)


def registry_routes() -> list[ControllerRouterHandler]:
    api = Router(
        path="/api/v1",
        route_handlers=[
            ModelController,
            VersionController,
            AliasController,
            AuditController,
            TokenController,
            WhoAmIController,
            BentoController,
            DeploymentController,
            TrafficController,
            WindowController,
            RolloutController,
            ExperimentController,
        ],
        guards=[role_guard],
        dependencies={
            "registry": _state("registry"),
            "authority": _state("authority"),
            "registration": _state("registration"),
            "artifacts": _state("artifacts"),
            "deployments": _state("deployments"),
            "feed": _state("feed"),
            "rollouts": _state("rollouts"),
            "experiments": _state("experiments"),
        },
    )
    links = Router(
        path="/",
        route_handlers=[local_download],
        dependencies={"artifacts": _state("artifacts")},
    )
    return [api, mlflow_router(), *unserved_routers(), links, livez, readyz, registry_metrics]
