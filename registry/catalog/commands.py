"""Inputs of the registry's use cases; also the request bodies of the REST API. Closed Structs."""

from __future__ import annotations

from typing import Annotated

import msgspec

from contract.routes import MAX_APIS, ApiSpec
from registry.catalog.domain import AliasName, Description, ModelName, Role, Stage, Tags, TagValue

Digest = Annotated[str, msgspec.Meta(pattern=r"^sha256:[0-9a-f]{64}$")]
Uri = Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9+.-]*://\S+$", max_length=2048)]
Reason = Annotated[str, msgspec.Meta(max_length=1000)]
ShortText = Annotated[str, msgspec.Meta(max_length=500)]
Metrics = Annotated[
    dict[Annotated[str, msgspec.Meta(max_length=250)], float], msgspec.Meta(max_length=500)
]
Params = Annotated[
    dict[Annotated[str, msgspec.Meta(max_length=250)], TagValue], msgspec.Meta(max_length=500)
]


class _Input(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    pass


class ModelCreate(_Input, frozen=True):
    name: ModelName
    description: Description = ""
    tags: Tags = {}


class ModelUpdate(_Input, frozen=True):
    description: Description | None = None


class VersionMeta(_Input, frozen=True):
    """What a client says about a version whose artifact facts come from the upload itself."""

    run_id: ShortText | None = None
    source: Annotated[str, msgspec.Meta(max_length=2048)] | None = None
    description: Description = ""
    metrics: Metrics = {}
    params: Params = {}
    tags: Tags = {}


class VersionCreate(VersionMeta, frozen=True):
    """A new version: an artifact (URI + digest + size) or an `endpoint`, or both."""

    artifact_uri: Uri | None = None
    digest: Digest | None = None
    size_bytes: Annotated[int, msgspec.Meta(ge=0)] | None = None
    format: Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9_-]{1,32}$")] = "bento"
    bento_tag: ShortText | None = None
    # each API held to the bounds of contract.routes.ApiSpec, as a Bento's manifest is
    apis: Annotated[list[ApiSpec], msgspec.Meta(max_length=MAX_APIS)] = []
    endpoint: Uri | None = None


class SourceVersionCreate(_Input, frozen=True):
    """A version known only by where its files are (`source`), as MLflow clients register them."""

    source: Annotated[str, msgspec.Meta(min_length=1, max_length=2048)]
    run_id: ShortText | None = None
    description: Description = ""
    tags: Tags = {}
    logged_model_id: ShortText | None = None
    run_link: Annotated[str, msgspec.Meta(max_length=2048)] | None = None


class VersionUpdate(_Input, frozen=True):
    description: Description | None = None
    # where the version answers (a model server run outside modelyard, e.g. its pod's Service)
    endpoint: Uri | None = None


class StageChange(_Input, frozen=True):
    stage: Stage
    archive_existing: bool = False
    reason: Reason | None = None


class AliasChange(_Input, frozen=True):
    version: Annotated[int, msgspec.Meta(ge=1, le=2**63 - 1)]
    reason: Reason | None = None


class TagChange(_Input, frozen=True):
    value: TagValue


class TokenCreate(_Input, frozen=True):
    name: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")]
    role: Role


__all__ = [
    "AliasChange",
    "AliasName",
    "ModelCreate",
    "ModelUpdate",
    "SourceVersionCreate",
    "StageChange",
    "TagChange",
    "TokenCreate",
    "VersionCreate",
    "VersionUpdate",
]
