"""The route table the gateways follow, and how it is built from registry state. Pure."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import msgspec

from registry.domain import ApiSpec, Model, ModelVersion, Stage
from registry.traffic import TrafficPolicy


class VersionRoute(msgspec.Struct, frozen=True):
    version: int
    endpoint: str
    protocol: str  # "bentoml" (JSON APIs) or "oip" (speaks the Open Inference Protocol itself)
    apis: list[ApiSpec] = []


class ModelRoute(msgspec.Struct, frozen=True):
    name: str
    stable: int | None  # the Production version
    versions: dict[int, VersionRoute]  # every version that can take traffic now
    aliases: dict[str, int]
    policy: TrafficPolicy
    staging: list[int] = []  # the Staging versions (served, so readiness waits for them)


class RouteTable(msgspec.Struct, frozen=True):
    revision: int
    models: dict[str, ModelRoute]


def version_route(
    version: ModelVersion, served_at: Mapping[tuple[str, int], str]
) -> VersionRoute | None:
    """Where a version answers: its own `endpoint`, or the server modelyard runs for it."""
    endpoint = version.endpoint or served_at.get((version.model, version.version))
    if endpoint is None:
        return None
    protocol = "oip" if version.format == "oip" else "bentoml"
    return VersionRoute(version.version, endpoint.rstrip("/"), protocol, list(version.apis))


def model_route(
    model: Model, versions: Iterable[ModelVersion], served_at: Mapping[tuple[str, int], str]
) -> ModelRoute:
    stable = None
    staging: list[int] = []
    routes: dict[int, VersionRoute] = {}
    for version in versions:
        if version.stage == Stage.PRODUCTION:
            stable = version.version
        elif version.stage == Stage.STAGING:
            staging.append(version.version)
        route = version_route(version, served_at)
        if route is not None:
            routes[version.version] = route
    return ModelRoute(
        name=model.name,
        stable=stable,
        versions=routes,
        aliases=dict(model.aliases),
        policy=model.traffic or TrafficPolicy(),
        staging=sorted(staging),
    )
