"""Moving a version between stages (None, Staging, Production, Archived). Pure."""

from __future__ import annotations

from msgspec.structs import replace

from registry.catalog.changes import Decision, ModelState, Op, UpdateVersion, WriteContext
from registry.catalog.commands import StageChange
from registry.catalog.decisions import audit, check_if_match, require_version
from registry.catalog.domain import EXCLUSIVE_STAGES, ModelVersion, Stage, version_etag
from registry.errors import StageOccupied


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
    refused. `archive_existing` into Staging likewise leaves one Staging version. (The traffic
    policy's part: `traffic.transition_stage`.)"""
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
                audit(
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
        audit(
            ctx,
            "version.stage",
            name,
            version=number,
            before={"stage": version.stage},
            after={"stage": cmd.stage, "archive_existing": cmd.archive_existing},
        ),
    ]
    return Decision(ops=ops, result=moved)
