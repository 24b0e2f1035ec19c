"""How the route table the gateways follow (`contract.routes`) is built from registry state.
Pure."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import assert_never

from contract.routes import ModelRoute, VersionRoute
from contract.traffic import TrafficPolicy
from registry.catalog.domain import Model, ModelVersion, Stage


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
        stage = version.stage
        match stage:
            case Stage.PRODUCTION:
                stable = version.version
            case Stage.STAGING:
                staging.append(version.version)
            case Stage.NONE | Stage.ARCHIVED:
                pass
            case _:
                assert_never(stage)
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
