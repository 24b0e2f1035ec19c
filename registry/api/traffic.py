"""REST: a model's traffic policy, and the route feed the gateways long-poll."""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Controller, Response, delete, get, put
from litestar.di import NamedDependency
from litestar.params import JSONBody, QueryParameter

from registry.api.context import PathStr, RegistryDep, Req, caller_of, if_match
from registry.api.models import model_response
from registry.domain import Model
from registry.feed import RouteFeed
from registry.readiness import ReadinessSource
from registry.routes import RouteTable
from registry.serving import VersionServing, traffic_versions
from registry.traffic import TrafficPolicy

FeedDep = NamedDependency[RouteFeed]
MAX_WAIT_S = 30.0


class TrafficView(TrafficPolicy, frozen=True, kw_only=True):
    """The policy in force, and where its traffic goes now. `versions` is read-only: PUT takes
    the policy alone."""

    #: The stable (Production) version and every version the policy names, each with its
    #: stage and whether it is being served now.
    versions: list[VersionServing]


class TrafficController(Controller):
    path = "/"
    tags = ["traffic"]

    @get("/models/{name:str}/traffic")
    async def get_traffic(self, registry: RegistryDep, request: Req, name: PathStr) -> TrafficView:
        """The policy in force (the default sends everything to the Production version), and
        whether each version it sends traffic to is being served now."""
        model, stable, found = await registry.traffic_versions(name)
        policy = model.traffic or TrafficPolicy()
        source: ReadinessSource | None = request.app.state.get("readiness")
        health = (
            {h.version: h for h in source.versions() if h.model == model.name} if source else {}
        )
        deployer = request.app.state.get("deployments") is not None
        served = traffic_versions(policy, stable, {v.version: v for v in found}, health,
                                  deployer=deployer)  # fmt: skip
        return TrafficView(**msgspec.structs.asdict(policy), versions=served)

    @put("/models/{name:str}/traffic")
    async def set_traffic(
        self, registry: RegistryDep, request: Req, name: PathStr, data: JSONBody[TrafficPolicy]
    ) -> Response[Model]:
        caller = await caller_of(request)
        return model_response(await registry.set_traffic(caller, name, data, if_match(request)))

    @delete("/models/{name:str}/traffic", status_code=200)
    async def clear_traffic(
        self, registry: RegistryDep, request: Req, name: PathStr
    ) -> Response[Model]:
        caller = await caller_of(request)
        return model_response(await registry.set_traffic(caller, name, None, if_match(request)))

    @get("/routes")
    async def routes(
        self,
        feed: FeedDep,
        after: Annotated[int, QueryParameter(ge=-1, description="revision the caller has")] = -1,
        wait_s: Annotated[float, QueryParameter(ge=0, le=MAX_WAIT_S)] = 0.0,
    ) -> Response[RouteTable | None]:
        """The route table once its revision is past `after`; 204 when `wait_s` ran out first."""
        table = await feed.wait(after, wait_s)
        if table is None:
            return Response(None, status_code=204)
        return Response(table)
