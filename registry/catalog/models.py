"""Decisions about registered models: create, describe, tag, rename, delete. Pure."""

from __future__ import annotations

from msgspec.structs import replace

from registry.catalog.changes import (
    CreateModel,
    Decision,
    DeleteAlias,
    DeleteModel,
    ModelState,
    Op,
    RenameModel,
    UpdateModel,
    WriteContext,
)
from registry.catalog.commands import ModelCreate
from registry.catalog.decisions import (
    audit,
    check_if_match,
    model_change,
    remember,
    replayed,
    require_model,
)
from registry.catalog.domain import Model, model_etag
from registry.errors import AlreadyExists, NotFound


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
    ops: list[Op] = [CreateModel(model), audit(ctx, "model.create", model.name, after=model)]
    return Decision(ops=ops + remember(ctx, model), result=model)


def update_model(
    state: ModelState, ctx: WriteContext, name: str, description: str | None, if_match: str | None
) -> Decision[Model]:
    model = require_model(state, name)
    if description is None or description == model.description:
        check_if_match(if_match, model_etag(model))
        return Decision(ops=[], result=model)
    return model_change(state, ctx, name, if_match, "model.update", description=description)


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
    return model_change(state, ctx, name, if_match, action, tags=tags)


def delete_model(
    state: ModelState, ctx: WriteContext, name: str, if_match: str | None
) -> Decision[None]:
    model = require_model(state, name)
    check_if_match(if_match, model_etag(model))
    ops: list[Op] = []
    for alias, number in sorted(state.aliases.items()):
        ops += [
            DeleteAlias(alias),
            audit(ctx, "alias.delete", name, alias=alias, before={"version": number}),
        ]
    ops += [DeleteModel(), audit(ctx, "model.delete", name, before=model)]
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
        audit(ctx, "model.rename", name, before={"name": name}, after={"name": new_name}),
    ]
    return Decision(ops=ops, result=renamed)
