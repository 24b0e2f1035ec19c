"""The route table the registry publishes and every gateway follows: for each model, the
versions that can take traffic now, where each answers, its aliases and its traffic policy.
Pure data; the registry builds it (`registry.serving.routes`), the gateway routes by it."""

from __future__ import annotations

import msgspec

from contract.traffic import TrafficPolicy


class ApiSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One BentoML API of a version: its name and the names of its inputs."""

    name: str
    inputs: list[str] = []


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
