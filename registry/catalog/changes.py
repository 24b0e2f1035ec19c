"""What a write sees and what it decides: the state loaded under a model's lock, and the
typed operations a store applies atomically. Pure data."""

from __future__ import annotations

from datetime import datetime
from typing import Generic, TypeVar

import msgspec

from registry.catalog.domain import Model, ModelVersion, Principal, Stage
from registry.experiments.stats import Experiment
from registry.rollouts.state import Look, Rollout

T = TypeVar("T")


class LoadSpec(msgspec.Struct, frozen=True):
    """Which rows a write needs, read under the model's lock."""

    versions: tuple[int, ...] = ()
    latest: bool = False  # the model's newest version, whichever it is when the lock is held
    stage_holders: bool = False  # every version in Staging or Production
    idempotency: tuple[int, str] | None = None  # (token id, Idempotency-Key)
    rollout: bool = False  # the model's active rollout and running experiment, if any


class StoredRequest(msgspec.Struct, frozen=True):
    """A creating request kept under its Idempotency-Key: what it was, and its answer."""

    fingerprint: str
    body: bytes


class ModelState(msgspec.Struct, frozen=True):
    model: Model | None
    versions: dict[int, ModelVersion]
    aliases: dict[str, int]
    replay: StoredRequest | None = None
    rollout: Rollout | None = None  # loaded with LoadSpec(rollout=True)
    experiment: Experiment | None = None  # loaded with LoadSpec(rollout=True)


class Caller(msgspec.Struct, frozen=True, kw_only=True):
    """Who asks for a change, and why; given by the HTTP layer."""

    principal: Principal
    request_id: str | None = None
    reason: str | None = None
    idempotency_key: str | None = None
    fingerprint: str | None = None


class WriteContext(Caller, frozen=True, kw_only=True):
    """The caller plus the time of the change, read under the model's lock so that audit
    times never run backwards along a chain."""

    now: datetime


# --- operations, applied in order inside one transaction -----------------------------------


class CreateModel(msgspec.Struct, frozen=True, tag=True):
    model: Model


class UpdateModel(msgspec.Struct, frozen=True, tag=True):
    model: Model


class DeleteModel(msgspec.Struct, frozen=True, tag=True):
    pass


class RenameModel(msgspec.Struct, frozen=True, tag=True):
    new_name: str


class CreateVersion(msgspec.Struct, frozen=True, tag=True):
    version: ModelVersion


class UpdateVersion(msgspec.Struct, frozen=True, tag=True):
    version: ModelVersion


class DeleteVersion(msgspec.Struct, frozen=True, tag=True):
    version: int


class SetAlias(msgspec.Struct, frozen=True, tag=True):
    alias: str
    version: int
    at: datetime


class DeleteAlias(msgspec.Struct, frozen=True, tag=True):
    alias: str


class Audit(msgspec.Struct, frozen=True, tag=True):
    """An event to append to the model's hash chain; the store seals it (seq, hashes)."""

    at: datetime
    actor: str
    action: str
    model: str | None
    version: int | None = None
    alias: str | None = None
    before: msgspec.Raw | None = None
    after: msgspec.Raw | None = None
    reason: str | None = None
    request_id: str | None = None


class RememberRequest(msgspec.Struct, frozen=True, tag=True):
    """Keep a creating request's answer under its Idempotency-Key, in the same transaction.
    (A replay answers like the first request did; its HTTP status is the web layer's.)"""

    key: str
    principal_id: int
    fingerprint: str
    body: bytes
    at: datetime


class SaveRollout(msgspec.Struct, frozen=True, tag=True):
    """Insert or replace a rollout's state."""

    rollout: Rollout


class SaveExperiment(msgspec.Struct, frozen=True, tag=True):
    experiment: Experiment


class AppendLook(msgspec.Struct, frozen=True, tag=True):
    rollout_id: str
    look: Look


Op = (
    CreateModel
    | UpdateModel
    | DeleteModel
    | RenameModel
    | CreateVersion
    | UpdateVersion
    | DeleteVersion
    | SetAlias
    | DeleteAlias
    | Audit
    | RememberRequest
    | SaveRollout
    | AppendLook
    | SaveExperiment
)


class Decision(msgspec.Struct, Generic[T], frozen=True):
    ops: list[Op]
    result: T


class VersionFilter(msgspec.Struct, frozen=True):
    stage: Stage | None = None
    tag: tuple[str, str] | None = None
    alias: str | None = None
    with_endpoint: bool = False  # only versions served by an outside endpoint


class ModelFilter(msgspec.Struct, frozen=True):
    prefix: str | None = None
    tag: tuple[str, str] | None = None
    stage: Stage | None = None  # models having a version in this stage
    alias: str | None = None  # models having this alias
