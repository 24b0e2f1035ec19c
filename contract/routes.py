"""The route table the registry publishes and every gateway follows: for each model, the
versions that can take traffic now, where each answers, its aliases and its traffic policy.
Pure data; the registry builds it (`registry.serving.routes`), the gateway routes by it."""

from __future__ import annotations

from typing import Final

import msgspec

from contract.traffic import TrafficPolicy

#: What a version may say of its APIs, on every way in (the JSON create-version request and a
#: Bento's manifest): at most MAX_APIS APIs, each named in 1 to MAX_API_NAME characters, with at
#: most MAX_INPUTS input names of the same length. What is read back is not checked again.
MAX_APIS: Final = 100
MAX_API_NAME: Final = 256
MAX_INPUTS: Final = 100


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
