"""Decisions about model versions: create (by artifact or endpoint, or by `source` the MLflow
way), describe, tag, delete. Pure. (Stages: `stages`; aliases: `aliases`.)"""

from __future__ import annotations

from datetime import datetime

from msgspec.structs import replace

from contract.routes import ApiSpec
from registry.catalog.changes import (
    CreateVersion,
    Decision,
    DeleteAlias,
    DeleteVersion,
    ModelState,
    Op,
    UpdateModel,
    WriteContext,
)
from registry.catalog.commands import SourceVersionCreate, VersionCreate
from registry.catalog.decisions import (
    AliasTarget,
    audit,
    check_if_match,
    remember,
    replayed,
    require_model,
    require_version,
    version_change,
)
from registry.catalog.domain import ModelVersion, Stage, VersionStatus, version_etag
from registry.errors import AliasInUse, InvalidInput, NotFound


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
    repeat_after: datetime,
) -> Decision[ModelVersion]:
    """A version registered by `source` (the MLflow way), numbered after the model's newest
    version (loaded with `LoadSpec(latest=True)`, under the model's lock). A true retry, the
    identical request from the same caller again while the newest version is its answer and
    was made after `repeat_after`, gets that version back instead of a second one: clients
    retry a create after a 5xx or a lost answer. Anything else is a new version."""
    model = require_model(state, name)
    newest = state.versions.get(model.latest_version)
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
        audit(ctx, "version.create", name, version=number, after=version),
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
        apis=[ApiSpec(api.name, list(api.inputs)) for api in cmd.apis],
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
        audit(ctx, "version.create", name, version=number, after=version),
    ]
    return Decision(ops=ops + remember(ctx, version), result=version)


def update_version(
    state: ModelState,
    ctx: WriteContext,
    name: str,
    number: int,
    description: str | None,
    if_match: str | None,
    endpoint: str | None = None,
) -> Decision[ModelVersion]:
    """Change a version's description and/or its endpoint (where it answers: a model server
    run outside modelyard, e.g. the pod `modelyard serve-version` runs on Kubernetes)."""
    version = require_version(state, name, number)
    given = {"description": description, "endpoint": endpoint}
    changes = {k: v for k, v in given.items() if v is not None and v != getattr(version, k)}
    if not changes:
        check_if_match(if_match, version_etag(version))
        return Decision(ops=[], result=version)
    return version_change(state, ctx, name, number, if_match, "version.update", **changes)


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
    return version_change(state, ctx, name, number, if_match, action, tags=tags)


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
            audit(
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
        audit(ctx, "version.delete", name, version=number, before=version),
    ]
    return Decision(ops=ops, result=None)
