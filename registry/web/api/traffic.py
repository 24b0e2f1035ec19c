"""REST: a model's traffic policy, and the route feed the gateways long-poll."""

from __future__ import annotations

from typing import Annotated, Final

import msgspec
from litestar import Controller, MediaType, Response, delete, get, put
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import JSONBody, QueryParameter

from contract.routes import RouteChanges
from contract.traffic import TrafficPolicy
from registry.catalog.domain import Model
from registry.serving.feed import RouteFeed
from registry.serving.rules import VersionServing, traffic_versions
from registry.web.api.context import MAX_BIGINT, PathStr, RegistryDep, Req, caller_of, if_match
from registry.web.api.models import model_response
from registry.web.errors import ErrorBody
from registry.web.state import web_of

FeedDep = NamedDependency[RouteFeed]
MAX_WAIT_S = 30.0


REFUSALS: Final = {
    400: ResponseSpec(
        ErrorBody,
        generate_examples=False,
        description="a bad policy, or a split of the stable version",
    ),
    404: ResponseSpec(
        ErrorBody,
        generate_examples=False,
        description="the model, or a version it names, does not exist",
    ),
    409: ResponseSpec(
        ErrorBody,
        generate_examples=False,
        description="VERSION_NOT_SERVED: a version it names cannot be served (not in"
        " Production or Staging, no endpoint); or a rollout or experiment steers the traffic"
        " (ROLLOUT_IN_PROGRESS)",
    ),
}


class TrafficView(TrafficPolicy, frozen=True, kw_only=True):
    """The policy in force, and where its traffic goes now. `versions` is read-only: PUT takes
    the policy alone."""

    versions: Annotated[
        list[VersionServing],
        msgspec.Meta(
            description="read-only: the stable (Production) version and every version the"
            " policy names, each with its stage and whether it is being served now",
        ),
    ]


class TrafficController(Controller):
    path = "/"
    tags = ["traffic"]

    @get("/models/{name:str}/traffic")
    async def get_traffic(self, registry: RegistryDep, request: Req, name: PathStr) -> TrafficView:
        """The policy in force (the default sends everything to the Production version), and
        whether each version it sends traffic to is being served now."""
        model, stable, found = await registry.traffic_versions(name)
        policy = model.traffic or TrafficPolicy()
        web = web_of(request)
        health = {h.version: h for h in web.readiness.versions() if h.model == model.name}
        versions = {v.version: v for v in found}
        deployer = web.deployments is not None
        served = traffic_versions(policy, stable, versions, health, deployer=deployer)
        return TrafficView(**msgspec.structs.asdict(policy), versions=served)

    @put("/models/{name:str}/traffic", responses=REFUSALS)
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

    @get(
        "/routes",
        responses={
            200: ResponseSpec(
                RouteChanges,
                generate_examples=False,
                description="the models changed since `after` (every model when `full`), and"
                " the names of those that went",
            )
        },
        status_code=200,
    )
    async def routes(
        self,
        feed: FeedDep,
        after: Annotated[
            int, QueryParameter(ge=-1, le=MAX_BIGINT, description="revision the caller has")
        ] = -1,
        wait_s: Annotated[float, QueryParameter(ge=0, le=MAX_WAIT_S)] = 0.0,
    ) -> Response[bytes]:
        """What changed in the route table since revision `after` (every model when `after` is
        -1 or too old: `full`), once there is something; 204 when `wait_s` ran out first."""
        encoded = await feed.wait_encoded(after, wait_s)
        if encoded is None:
            return Response(b"", status_code=204)
        return Response(encoded, media_type=MediaType.JSON)
