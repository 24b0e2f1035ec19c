"""The registry's decisions: given the state read under a model's lock and a command, what
changes. Pure functions; the store applies the returned operations in one transaction."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
from msgspec.structs import replace

from registry.catalog.changes import (
    Audit,
    CreateModel,
    CreateVersion,
    Decision,
    DeleteAlias,
    DeleteModel,
    DeleteVersion,
    ModelState,
    Op,
    RememberRequest,
    RenameModel,
    SetAlias,
    UpdateModel,
    UpdateVersion,
    WriteContext,
)
from registry.catalog.commands import (
    AliasChange,
    ModelCreate,
    SourceVersionCreate,
    StageChange,
    VersionCreate,
)
from registry.catalog.domain import (
    EXCLUSIVE_STAGES,
    Model,
    ModelVersion,
    Stage,
    VersionStatus,
    model_etag,
    version_etag,
)
from registry.errors import (
    AliasInUse,
    AlreadyExists,
    IdempotencyKeyReused,
    InvalidInput,
    NotFound,
    PreconditionFailed,
    StageOccupied,
)

_encoder = msgspec.json.Encoder()


def _raw(value: Any) -> msgspec.Raw:
    return msgspec.Raw(_encoder.encode(value))


def _audit(ctx: WriteContext, action: str, model: str, **kw: Any) -> Audit:
    for key in ("before", "after"):
        if kw.get(key) is not None:
            kw[key] = _raw(kw[key])
    return Audit(
        at=ctx.now,
        actor=ctx.principal.name,
        action=action,
        model=model,
        reason=ctx.reason,
        request_id=ctx.request_id,
        **kw,
    )


def require_model(state: ModelState, name: str) -> Model:
    if state.model is None:
        raise NotFound(f"registered model {name!r} does not exist", field="name")
    return state.model


def require_version(state: ModelState, name: str, number: int) -> ModelVersion:
    require_model(state, name)
    found = state.versions.get(number)
    if found is None:
        raise NotFound(f"version {number} of model {name!r} does not exist", field="version")
    return found


def check_if_match(if_match: str | None, etag: str) -> None:
    if if_match is None or if_match.strip() == "*":
        return
    offered = {tag.strip().removeprefix("W/") for tag in if_match.split(",")}
    if etag not in offered:
        raise PreconditionFailed(
            f"If-Match {if_match} does not match the current ETag {etag}; re-read and retry",
            field="If-Match",
        )


def replayed(state: ModelState, ctx: WriteContext, decode: type[Any]) -> Decision[Any] | None:
    """A repeated creating request with the same Idempotency-Key gets the first answer."""
    if state.replay is None:
        return None
    if state.replay.fingerprint != ctx.fingerprint:
        raise IdempotencyKeyReused(
            "this Idempotency-Key was already used for a different request", field="Idempotency-Key"
        )
    return Decision(ops=[], result=msgspec.json.decode(state.replay.body, type=decode))


def _remember(ctx: WriteContext, result: Any) -> list[Op]:
    if ctx.idempotency_key is None or ctx.fingerprint is None:
        return []
    return [
        RememberRequest(
            key=ctx.idempotency_key,
            principal_id=ctx.principal.token_id,
            fingerprint=ctx.fingerprint,
            status=201,
            body=_encoder.encode(result),
            at=ctx.now,
        )
    ]


# --- models ---------------------------------------------------------------------------------


def create_model(state: ModelState, ctx: WriteContext, cmd: ModelCreate) -> Decision[Model]:
    if (replay := replayed(state, ctx, Model)) is not None:
        return replay
    if state.model is not None:
        raise AlreadyExists(f"registered model {cmd.name!r} already exists", field="name")
    model = Model(
        name=cmd.name,
        description=cmd.description,
        tags=dict(cmd.tags),
        owner=ctx.principal.name,
        created_at=ctx.now,
        updated_at=ctx.now,
        revision=1,
        latest_version=0,
    )
    ops: list[Op] = [CreateModel(model), _audit(ctx, "model.create", model.name, after=model)]
    return Decision(ops=ops + _remember(ctx, model), result=model)


def _model_change(
    state: ModelState,
    ctx: WriteContext,
    name: str,
    if_match: str | None,
    action: str,
    **changes: Any,
) -> Decision[Model]:
    model = require_model(state, name)
    check_if_match(if_match, model_etag(model))
    updated = replace(model, **changes, updated_at=ctx.now, revision=model.revision + 1)
    before = {k: getattr(model, k) for k in changes}
    after = {k: getattr(updated, k) for k in changes}
    ops: list[Op] = [UpdateModel(updated), _audit(ctx, action, name, before=before, after=after)]
    return Decision(ops=ops, result=updated)


def update_model(
    state: ModelState, ctx: WriteContext, name: str, description: str | None, if_match: str | None
) -> Decision[Model]:
    model = require_model(state, name)
    if description is None or description == model.description:
        check_if_match(if_match, model_etag(model))
        return Decision(ops=[], result=model)
    return _model_change(state, ctx, name, if_match, "model.update", description=description)


def set_model_tag(
    state: ModelState,
    ctx: WriteContext,
    name: str,
    key: str,
    value: str | None,
    if_match: str | None,
) -> Decision[Model]:
    model = require_model(state, name)
    tags = dict(model.tags)
    if value is None:
        if key not in tags:
            raise NotFound(f"model {name!r} has no tag {key!r}", field="key")
        del tags[key]
    else:
        tags[key] = value
    action = "model.tag.delete" if value is None else "model.tag.set"
    return _model_change(state, ctx, name, if_match, action, tags=tags)


def delete_model(
    state: ModelState, ctx: WriteContext, name: str, if_match: str | None
) -> Decision[None]:
    model = require_model(state, name)
    check_if_match(if_match, model_etag(model))
    ops: list[Op] = []
    for alias, number in sorted(state.aliases.items()):
        ops += [
            DeleteAlias(alias),
            _audit(ctx, "alias.delete", name, alias=alias, before={"version": number}),
        ]
    ops += [DeleteModel(), _audit(ctx, "model.delete", name, before=model)]
    return Decision(ops=ops, result=None)


def rename_model(
    state: ModelState, ctx: WriteContext, name: str, new_name: str, if_match: str | None
) -> Decision[Model]:
    """Give a model a new name; its versions and aliases follow it. A taken name is refused by
    the store's unique name (the new name's chain is not locked by this write)."""
    model = require_model(state, name)
    check_if_match(if_match, model_etag(model))
    if new_name == name:
        return Decision(ops=[], result=model)
    renamed = replace(model, name=new_name, updated_at=ctx.now, revision=model.revision + 1)
    ops: list[Op] = [
        RenameModel(new_name),
        UpdateModel(renamed),
        _audit(ctx, "model.rename", name, before={"name": name}, after={"name": new_name}),
    ]
    return Decision(ops=ops, result=renamed)


# --- versions -------------------------------------------------------------------------------


def _same_request(v: ModelVersion, ctx: WriteContext, cmd: SourceVersionCreate) -> bool:
    return (
        v.source == cmd.source
        and v.run_id == cmd.run_id
        and v.description == cmd.description
        and v.tags == cmd.tags
        and v.logged_model_id == cmd.logged_model_id
        and v.run_link == cmd.run_link
        and v.created_by == ctx.principal.name
        and v.artifact_uri is None
        and v.endpoint is None
    )


def register_source_version(
    state: ModelState,
    ctx: WriteContext,
    name: str,
    cmd: SourceVersionCreate,
    expected_latest: int,
    repeat_after: datetime,
) -> Decision[ModelVersion | None]:
    """A version registered by `source` (the MLflow way). The same request from the same caller
    again, while the model's newest version is its answer and was made after `repeat_after`,
    gets that version back instead of a second one: clients retry a create after a 5xx or a
    lost answer. `expected_latest` (loaded with the state) is the newest version the caller
    saw; if another version was made since, the result is None and the caller reads again."""
    model = require_model(state, name)
    if model.latest_version != expected_latest:
        return Decision(ops=[], result=None)
    newest = state.versions.get(expected_latest)
    if newest is not None and newest.created_at >= repeat_after and _same_request(newest, ctx, cmd):
        return Decision(ops=[], result=newest)
    number = model.latest_version + 1
    version = ModelVersion(
        model=name,
        version=number,
        stage=Stage.NONE,
        status=VersionStatus.READY,
        description=cmd.description,
        artifact_uri=None,
        digest=None,
        size_bytes=None,
        format="mlflow",
        bento_tag=None,
        apis=[],
        endpoint=None,
        run_id=cmd.run_id,
        source=cmd.source,
        metrics={},
        params={},
        tags=dict(cmd.tags),
        created_by=ctx.principal.name,
        created_at=ctx.now,
        updated_at=ctx.now,
        revision=1,
        logged_model_id=cmd.logged_model_id,
        run_link=cmd.run_link,
    )
    bumped = replace(model, latest_version=number, updated_at=ctx.now, revision=model.revision + 1)
    ops: list[Op] = [
        UpdateModel(bumped),
        CreateVersion(version),
        _audit(ctx, "version.create", name, version=number, after=version),
    ]
    return Decision(ops=ops, result=version)


def create_version(
    state: ModelState, ctx: WriteContext, name: str, cmd: VersionCreate
) -> Decision[ModelVersion]:
    if (replay := replayed(state, ctx, ModelVersion)) is not None:
        return replay
    model = require_model(state, name)
    if cmd.artifact_uri is None and cmd.endpoint is None:
        raise InvalidInput("a version needs `artifact_uri` or `endpoint`", field="artifact_uri")
    if cmd.artifact_uri is not None and cmd.digest is None:
        raise InvalidInput(
            "`digest` (sha256:<hex>) is required with `artifact_uri`", field="digest"
        )
    number = model.latest_version + 1
    version = ModelVersion(
        model=name,
        version=number,
        stage=Stage.NONE,
        status=VersionStatus.READY,
        description=cmd.description,
        artifact_uri=cmd.artifact_uri,
        digest=cmd.digest,
        size_bytes=cmd.size_bytes,
        format=cmd.format,
        bento_tag=cmd.bento_tag,
        apis=list(cmd.apis),
        endpoint=cmd.endpoint,
        run_id=cmd.run_id,
        source=cmd.source,
        metrics=dict(cmd.metrics),
        params=dict(cmd.params),
        tags=dict(cmd.tags),
        created_by=ctx.principal.name,
        created_at=ctx.now,
        updated_at=ctx.now,
        revision=1,
    )
    bumped = replace(model, latest_version=number, updated_at=ctx.now, revision=model.revision + 1)
    ops: list[Op] = [
        UpdateModel(bumped),
        CreateVersion(version),
        _audit(ctx, "version.create", name, version=number, after=version),
    ]
    return Decision(ops=ops + _remember(ctx, version), result=version)


def _version_change(
    state: ModelState,
    ctx: WriteContext,
    name: str,
    number: int,
    if_match: str | None,
    action: str,
    **changes: Any,
) -> Decision[ModelVersion]:
    version = require_version(state, name, number)
    check_if_match(if_match, version_etag(version))
    updated = replace(version, **changes, updated_at=ctx.now, revision=version.revision + 1)
    before = {k: getattr(version, k) for k in changes}
    after = {k: getattr(updated, k) for k in changes}
    ops: list[Op] = [
        UpdateVersion(updated),
        _audit(ctx, action, name, version=number, before=before, after=after),
    ]
    return Decision(ops=ops, result=updated)


def update_version(
    state: ModelState,
    ctx: WriteContext,
    name: str,
    number: int,
    description: str | None,
    if_match: str | None,
) -> Decision[ModelVersion]:
    version = require_version(state, name, number)
    if description is None or description == version.description:
        check_if_match(if_match, version_etag(version))
        return Decision(ops=[], result=version)
    return _version_change(
        state, ctx, name, number, if_match, "version.update", description=description
    )


def set_version_tag(
    state: ModelState,
    ctx: WriteContext,
    name: str,
    number: int,
    key: str,
    value: str | None,
    if_match: str | None,
) -> Decision[ModelVersion]:
    version = require_version(state, name, number)
    tags = dict(version.tags)
    if value is None:
        if key not in tags:
            raise NotFound(f"version {number} of {name!r} has no tag {key!r}", field="key")
        del tags[key]
    else:
        tags[key] = value
    action = "version.tag.delete" if value is None else "version.tag.set"
    return _version_change(state, ctx, name, number, if_match, action, tags=tags)


def transition_stage(
    state: ModelState,
    ctx: WriteContext,
    name: str,
    number: int,
    cmd: StageChange,
    if_match: str | None,
) -> Decision[ModelVersion]:
    """Move a version to a stage. Production never holds two versions: with
    `archive_existing` the holder is archived in the same transaction, without it the call is
    refused. `archive_existing` into Staging likewise leaves one Staging version."""
    version = require_version(state, name, number)
    check_if_match(if_match, version_etag(version))
    if version.stage == cmd.stage:
        return Decision(ops=[], result=version)
    holders = sorted(
        v.version for v in state.versions.values() if v.stage == cmd.stage and v.version != number
    )
    if holders and cmd.stage == Stage.PRODUCTION and not cmd.archive_existing:
        raise StageOccupied(
            f"version {holders[0]} of {name!r} is in Production; pass archive_existing=true"
            " to replace it",
            field="archive_existing",
        )
    ops: list[Op] = []
    if cmd.archive_existing and cmd.stage in EXCLUSIVE_STAGES:
        for other in holders:
            old = state.versions[other]
            archived = replace(
                old, stage=Stage.ARCHIVED, updated_at=ctx.now, revision=old.revision + 1
            )
            ops += [
                UpdateVersion(archived),
                _audit(
                    ctx,
                    "version.stage",
                    name,
                    version=other,
                    before={"stage": old.stage},
                    after={"stage": Stage.ARCHIVED, "archived_by_version": number},
                ),
            ]
    moved = replace(version, stage=cmd.stage, updated_at=ctx.now, revision=version.revision + 1)
    ops += [
        UpdateVersion(moved),
        _audit(
            ctx,
            "version.stage",
            name,
            version=number,
            before={"stage": version.stage},
            after={"stage": cmd.stage, "archive_existing": cmd.archive_existing},
        ),
    ]
    return Decision(ops=ops, result=moved)


def delete_version(
    state: ModelState,
    ctx: WriteContext,
    name: str,
    number: int,
    if_match: str | None,
    release_aliases: bool = False,
) -> Decision[None]:
    """Delete a version. An alias holding it blocks the delete, unless `release_aliases` (the
    MLflow behaviour) deletes those aliases in the same transaction."""
    version = require_version(state, name, number)
    check_if_match(if_match, version_etag(version))
    held = sorted(alias for alias, v in state.aliases.items() if v == number)
    if held and not release_aliases:
        raise AliasInUse(
            f"version {number} of {name!r} is held by alias(es) {', '.join(held)};"
            " move or delete them first",
            field="version",
        )
    ops: list[Op] = []
    for alias in held:
        ops += [
            DeleteAlias(alias),
            _audit(
                ctx,
                "alias.delete",
                name,
                version=number,
                alias=alias,
                before=AliasTarget(number),
                after=AliasTarget(None),
            ),
        ]
    ops += [
        DeleteVersion(number),
        _audit(ctx, "version.delete", name, version=number, before=version),
    ]
    return Decision(ops=ops, result=None)


# --- aliases --------------------------------------------------------------------------------


class AliasTarget(msgspec.Struct, frozen=True):
    version: int | None


def set_alias(
    state: ModelState,
    ctx: WriteContext,
    name: str,
    alias: str,
    cmd: AliasChange,
    if_match: str | None,
) -> Decision[ModelVersion]:
    model = require_model(state, name)
    check_if_match(if_match, model_etag(model))
    version = require_version(state, name, cmd.version)
    current = state.aliases.get(alias)
    if current == cmd.version:
        return Decision(ops=[], result=version)
    bumped = replace(model, updated_at=ctx.now, revision=model.revision + 1)
    ops: list[Op] = [
        SetAlias(alias, cmd.version, ctx.now),
        UpdateModel(bumped),
        _audit(
            ctx,
            "alias.set",
            name,
            version=cmd.version,
            alias=alias,
            before=AliasTarget(current),
            after=AliasTarget(cmd.version),
        ),
    ]
    aliases = sorted({*version.aliases, alias})
    return Decision(ops=ops, result=replace(version, aliases=aliases))


def delete_alias(
    state: ModelState, ctx: WriteContext, name: str, alias: str, if_match: str | None
) -> Decision[None]:
    model = require_model(state, name)
    check_if_match(if_match, model_etag(model))
    current = state.aliases.get(alias)
    if current is None:
        raise NotFound(f"model {name!r} has no alias {alias!r}", field="alias")
    bumped = replace(model, updated_at=ctx.now, revision=model.revision + 1)
    ops: list[Op] = [
        DeleteAlias(alias),
        UpdateModel(bumped),
        _audit(
            ctx,
            "alias.delete",
            name,
            version=current,
            alias=alias,
            before=AliasTarget(current),
            after=AliasTarget(None),
        ),
    ]
    return Decision(ops=ops, result=None)
