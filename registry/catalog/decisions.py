"""What every decision of the registry is made of: the state's checks (the model or version
exists, If-Match holds, an Idempotency-Key's replay), audit events, and the change of a model
or a version with its audit. Pure; the rules by area (`models`, `versions`, `stages`,
`aliases`, `traffic`, and the rollouts' and experiments' rules) build on these."""

from __future__ import annotations

from typing import Any, Final

import msgspec
from msgspec.structs import replace

from registry.catalog.changes import (
    Audit,
    Decision,
    ModelState,
    Op,
    RememberRequest,
    UpdateModel,
    UpdateVersion,
    WriteContext,
)
from registry.catalog.domain import Model, ModelVersion, model_etag, version_etag
from registry.errors import IdempotencyKeyReused, NotFound, PreconditionFailed

_encoder: Final = msgspec.json.Encoder()


class AliasTarget(msgspec.Struct, frozen=True):
    """An alias's side of an `alias.set` or `alias.delete` audit event (None: not set)."""

    version: int | None


def audit(ctx: WriteContext, action: str, model: str, **kw: Any) -> Audit:
    """An audit event of this write; `before` and `after` are encoded to JSON here."""
    for key in ("before", "after"):
        if kw.get(key) is not None:
            kw[key] = msgspec.Raw(_encoder.encode(kw[key]))
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


def remember(ctx: WriteContext, result: Any) -> list[Op]:
    """Keep a creating request's answer under its Idempotency-Key (none: nothing to keep)."""
    if ctx.idempotency_key is None or ctx.fingerprint is None:
        return []
    return [
        RememberRequest(
            key=ctx.idempotency_key,
            principal_id=ctx.principal.token_id,
            fingerprint=ctx.fingerprint,
            body=_encoder.encode(result),
            at=ctx.now,
        )
    ]


def model_change(
    state: ModelState,
    ctx: WriteContext,
    name: str,
    if_match: str | None,
    action: str,
    **changes: Any,
) -> Decision[Model]:
    """Change fields of the model (a new revision), audited as `action` with their values
    before and after."""
    model = require_model(state, name)
    check_if_match(if_match, model_etag(model))
    updated = replace(model, **changes, updated_at=ctx.now, revision=model.revision + 1)
    before = {k: getattr(model, k) for k in changes}
    after = {k: getattr(updated, k) for k in changes}
    ops: list[Op] = [UpdateModel(updated), audit(ctx, action, name, before=before, after=after)]
    return Decision(ops=ops, result=updated)


def version_change(
    state: ModelState,
    ctx: WriteContext,
    name: str,
    number: int,
    if_match: str | None,
    action: str,
    **changes: Any,
) -> Decision[ModelVersion]:
    """`model_change` for one version."""
    version = require_version(state, name, number)
    check_if_match(if_match, version_etag(version))
    updated = replace(version, **changes, updated_at=ctx.now, revision=version.revision + 1)
    before = {k: getattr(version, k) for k in changes}
    after = {k: getattr(updated, k) for k in changes}
    ops: list[Op] = [
        UpdateVersion(updated),
        audit(ctx, action, name, version=number, before=before, after=after),
    ]
    return Decision(ops=ops, result=updated)
