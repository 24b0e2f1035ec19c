"""MLflow's registry JSON, as msgspec Structs, and the mapping from modelyard's entities. Pure.

Field names, types and defaults follow MLflow's protobuf messages (model_registry.proto):
a version travels as a string, times are integer milliseconds, tags are `[{key, value}]`,
empty fields are left out (proto3 JSON). Request Structs ignore fields they do not know, as
MLflow's own server does (it parses requests with `ignore_unknown_fields=True`), so a newer
client that sends more keeps working; every field of MLflow's request messages is known here
or deliberately ignored (tests/unit/test_mlflow_messages.py holds the list).
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime, timedelta
from typing import Final

import msgspec

from registry.catalog.domain import Model, ModelVersion, Stage
from registry.errors import InvalidInput

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MS: Final = timedelta(milliseconds=1)
MAX_MODEL_RESULTS: Final = 1000
MAX_VERSION_RESULTS: Final = 200_000
DEFAULT_MODEL_RESULTS: Final = 100
DEFAULT_VERSION_RESULTS: Final = 200_000


def millis(at: datetime) -> int:
    return (at - _EPOCH) // _MS


def version_number(text: str | int, field: str = "version") -> int:
    """MLflow's string version to modelyard's integer."""
    try:
        number = int(str(text).strip())
    except ValueError:
        number = 0
    if not 1 <= number < 2**63:  # versions are BIGINTs: a larger number cannot name one
        raise InvalidInput(
            f"{field} must be a positive integer below 2^63, got {str(text)[:40]!r}", field=field
        )
    return number


def stage_of(text: str) -> Stage:
    """MLflow accepts stage names in any case (`production`, `PRODUCTION`)."""
    for stage in Stage:
        if stage.value.lower() == text.strip().lower():
            return stage
    valid = ", ".join(s.value for s in Stage)
    raise InvalidInput(f"invalid model version stage {text!r}; use one of {valid}", field="stage")


# --- responses -------------------------------------------------------------------------------


class _Out(msgspec.Struct, omit_defaults=True):
    pass


class Tag(_Out):
    key: str
    value: str = ""


class Alias(_Out):
    alias: str
    version: str


class MlflowVersion(_Out):
    name: str
    version: str
    creation_timestamp: int = 0
    last_updated_timestamp: int = 0
    user_id: str = ""
    current_stage: str = ""
    description: str = ""
    source: str = ""
    run_id: str = ""
    status: str = ""
    status_message: str = ""
    tags: list[Tag] = []
    run_link: str = ""
    aliases: list[str] = []
    model_id: str = ""  # MLflow 3: the logged model the version was registered from


class MlflowModel(_Out):
    name: str
    creation_timestamp: int = 0
    last_updated_timestamp: int = 0
    user_id: str = ""
    description: str = ""
    latest_versions: list[MlflowVersion] = []
    tags: list[Tag] = []
    aliases: list[Alias] = []


class ModelBody(_Out):
    registered_model: MlflowModel


class VersionBody(_Out):
    model_version: MlflowVersion


class VersionsBody(_Out):
    model_versions: list[MlflowVersion] = []


class ModelSearchBody(_Out):
    registered_models: list[MlflowModel] = []
    next_page_token: str = ""


class VersionSearchBody(_Out):
    model_versions: list[MlflowVersion] = []
    next_page_token: str = ""


class DownloadUriBody(_Out):
    artifact_uri: str = ""


class Empty(_Out):
    pass


class ErrorBody(msgspec.Struct):
    error_code: str
    message: str


def _tags(tags: dict[str, str]) -> list[Tag]:
    return [Tag(k, v) for k, v in sorted(tags.items())]


def download_uri(v: ModelVersion) -> str:
    """Where the version's files are: the stored artifact, else the source MLflow gave."""
    return v.artifact_uri or v.source or v.endpoint or ""


def to_version(v: ModelVersion) -> MlflowVersion:
    return MlflowVersion(
        name=v.model,
        version=str(v.version),
        creation_timestamp=millis(v.created_at),
        last_updated_timestamp=millis(v.updated_at),
        user_id=v.created_by,
        current_stage=v.stage.value,
        description=v.description,
        source=v.source or v.artifact_uri or v.endpoint or "",
        run_id=v.run_id or "",
        status=v.status.value,
        tags=_tags(v.tags),
        run_link=v.run_link or "",
        aliases=sorted(v.aliases),
        model_id=v.logged_model_id or "",
    )


def to_model(m: Model, latest: list[ModelVersion] | None = None) -> MlflowModel:
    return MlflowModel(
        name=m.name,
        creation_timestamp=millis(m.created_at),
        last_updated_timestamp=millis(m.updated_at),
        user_id=m.owner,
        description=m.description,
        latest_versions=[to_version(v) for v in latest or []],
        tags=_tags(m.tags),
        aliases=[Alias(a, str(n)) for a, n in sorted(m.aliases.items())],
    )


def version_attributes(v: MlflowVersion) -> dict[str, str | int | None]:
    """What a version filter compares, by MLflow's key names."""
    return {
        "name": v.name,
        "version_number": int(v.version),
        "run_id": v.run_id or None,
        "source_path": v.source or None,
        "creation_timestamp": v.creation_timestamp,
        "last_updated_timestamp": v.last_updated_timestamp,
    }


def model_attributes(m: MlflowModel) -> dict[str, str | int | None]:
    return {
        "name": m.name,
        "creation_timestamp": m.creation_timestamp,
        "last_updated_timestamp": m.last_updated_timestamp,
    }


# --- what is not served ------------------------------------------------------------------------

#: MLflow's registry endpoints, the part of MLflow's REST API that modelyard serves.
REGISTRY_PATHS: Final = tuple(
    f"/api/2.0/mlflow/{part}/" for part in ("registered-models", "model-versions", "webhooks")
)


def unserved_message(method: str, path: str) -> str:
    """What a client that calls an MLflow endpoint modelyard does not serve is told: most often
    a tracking call (experiments, runs, logged models, artifacts, traces) sent here because
    MLFLOW_TRACKING_URI points at modelyard."""
    called = f"{method} {path[:200]}"
    if path.startswith(REGISTRY_PATHS) or path.rstrip("/") == "/api/2.0/mlflow/webhooks":
        return (
            f"{called} is not an MLflow registry endpoint that modelyard serves (it serves "
            "registered-models/*, model-versions/* and webhooks; see docs/mlflow.md)"
        )
    return (
        f"{called} is MLflow tracking (experiments, runs, logged models, artifacts, traces), "
        "which modelyard does not serve: it serves MLflow's model registry only. Point "
        "MLFLOW_TRACKING_URI at an MLflow tracking server (`mlflow server`) or a local store "
        "(sqlite:///mlflow.db), and MLFLOW_REGISTRY_URI at this server (see docs/mlflow.md)"
    )


# --- requests ----------------------------------------------------------------------------------


class _In(msgspec.Struct, frozen=True):
    pass


class CreateModelRequest(_In, frozen=True):
    name: str
    tags: list[Tag] = []
    description: str = ""


class RenameModelRequest(_In, frozen=True):
    name: str
    new_name: str


class UpdateModelRequest(_In, frozen=True):
    name: str
    description: str | None = None


class NameRequest(_In, frozen=True):
    name: str


class LatestVersionsRequest(_In, frozen=True):
    name: str
    stages: list[str] = []


class CreateVersionRequest(_In, frozen=True):
    name: str
    source: str = ""
    run_id: str = ""
    tags: list[Tag] = []
    run_link: str = ""
    description: str = ""
    model_id: str = ""


class VersionRequest(_In, frozen=True):
    name: str
    version: str


class UpdateVersionRequest(_In, frozen=True):
    name: str
    version: str
    description: str | None = None


class TransitionRequest(_In, frozen=True):
    name: str
    version: str
    stage: str
    archive_existing_versions: bool = False


class ModelTagRequest(_In, frozen=True):
    name: str
    key: str
    value: str = ""


class ModelTagDeleteRequest(_In, frozen=True):
    name: str
    key: str


class VersionTagRequest(_In, frozen=True):
    name: str
    version: str
    key: str
    value: str = ""


class VersionTagDeleteRequest(_In, frozen=True):
    name: str
    version: str
    key: str


class AliasRequest(_In, frozen=True):
    name: str
    alias: str
    version: str


class AliasNameRequest(_In, frozen=True):
    name: str
    alias: str


def tag_map(tags: list[Tag]) -> dict[str, str]:
    return {t.key: t.value for t in tags}


# --- page tokens: MLflow's own format, base64 of {"offset": n} -------------------------------


def page_token(offset: int) -> str:
    return base64.b64encode(json.dumps({"offset": offset}).encode()).decode()


def page_offset(token: str | None) -> int:
    if not token:
        return 0
    try:
        found = json.loads(base64.b64decode(token, validate=True))
        offset = found["offset"]
    except (binascii.Error, ValueError, TypeError, KeyError):
        offset = None
    if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
        raise InvalidInput("invalid page_token: not one this server returned", field="page_token")
    return offset


def max_results(value: int | None, default: int, cap: int) -> int:
    if value is None:
        return default
    if not 0 < value <= cap:
        raise InvalidInput(f"max_results must be between 1 and {cap}", field="max_results")
    return value
