"""The REST API's routers: `/api/v1` behind the role guard, and the signed download links."""

from __future__ import annotations

from litestar import Router

from registry.web.api.aliases import AliasController
from registry.web.api.audit import AuditController
from registry.web.api.bentos import BentoController, local_download
from registry.web.api.body import DepthCheckedRequest, refuse_nul_in_url
from registry.web.api.context import role_guard
from registry.web.api.deployments import DeploymentController
from registry.web.api.experiments import ExperimentController
from registry.web.api.models import ModelController
from registry.web.api.rollouts import RolloutController
from registry.web.api.tokens import TokenController, WhoAmIController
from registry.web.api.traffic import TrafficController
from registry.web.api.versions import VersionController
from registry.web.api.windows import WindowController
from registry.web.state import provide


def api_routes() -> tuple[Router, Router]:
    """`/api/v1`, and the signed download links (no token: the signature is the credential)."""
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
        request_class=DepthCheckedRequest,
        before_request=refuse_nul_in_url,
        dependencies={
            "registry": provide(lambda web: web.registry),
            "authority": provide(lambda web: web.authority),
            "registration": provide(lambda web: web.registration),
            "artifacts": provide(lambda web: web.artifacts),
            "deployments": provide(lambda web: web.deployments),
            "feed": provide(lambda web: web.feed),
            "rollouts": provide(lambda web: web.rollouts),
            "experiments": provide(lambda web: web.experiments),
        },
    )
    links = Router(
        path="/",
        route_handlers=[local_download],
        dependencies={"artifacts": provide(lambda web: web.artifacts)},
    )
    return api, links
