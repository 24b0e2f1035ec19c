"""Pointing a model's aliases at its versions, and removing them. Pure.

An alias's history is read back from the audit log (`AliasTarget`, in `decisions`)."""

from __future__ import annotations

from msgspec.structs import replace

from registry.catalog.changes import (
    Decision,
    DeleteAlias,
    ModelState,
    Op,
    SetAlias,
    UpdateModel,
    WriteContext,
)
from registry.catalog.commands import AliasChange
from registry.catalog.decisions import (
    AliasTarget,
    audit,
    check_if_match,
    require_model,
    require_version,
)
from registry.catalog.domain import ModelVersion, model_etag
from registry.errors import NotFound


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
        audit(
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
        audit(
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
