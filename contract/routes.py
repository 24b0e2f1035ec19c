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


class RouteChanges(msgspec.Struct, frozen=True):
    """One answer of the route feed: the models that changed since the revision the gateway
    had (`full`: every model, to replace its table), and the names of those that went."""

    revision: int
    models: dict[str, ModelRoute]
    removed: list[str] = []
    full: bool = True


def apply_changes(table: RouteTable | None, changes: RouteChanges) -> RouteTable:
    """The table after `changes`: a new table object (the old one is left as it was, so a
    reader holding it, or a thread saving it, sees one consistent table)."""
    if changes.full or table is None:
        return RouteTable(revision=changes.revision, models=dict(changes.models))
    models = dict(table.models)
    for name in changes.removed:
        models.pop(name, None)
    models.update(changes.models)
    return RouteTable(revision=changes.revision, models=models)
