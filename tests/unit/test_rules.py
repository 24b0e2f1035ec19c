"""The registry's decisions, on hand-built states: no store, no IO."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest

from registry.catalog.aliases import set_alias
from registry.catalog.changes import (
    Audit,
    CreateVersion,
    DeleteAlias,
    DeleteModel,
    ModelState,
    RememberRequest,
    SetAlias,
    StoredRequest,
    UpdateModel,
    UpdateVersion,
    WriteContext,
)
from registry.catalog.commands import AliasChange, ModelCreate, StageChange, VersionCreate
from registry.catalog.domain import (
    Model,
    ModelVersion,
    Principal,
    Role,
    Stage,
    VersionStatus,
    model_etag,
    version_etag,
)
from registry.catalog.models import create_model, delete_model
from registry.catalog.stages import transition_stage
from registry.catalog.versions import create_version, delete_version
from registry.errors import (
    AliasInUse,
    AlreadyExists,
    IdempotencyKeyReused,
    InvalidInput,
    NotFound,
    PreconditionFailed,
    StageOccupied,
)

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
CTX = WriteContext(principal=Principal(1, "alice", Role.DEPLOYER), now=NOW, request_id="r1")
DIGEST = "sha256:" + "ab" * 32


def model(latest: int = 3) -> Model:
    return Model("iris", "", {}, "alice", NOW, NOW, 1, latest)


def version(n: int, stage: Stage = Stage.NONE) -> ModelVersion:
    return ModelVersion(
        "iris",
        n,
        stage,
        VersionStatus.READY,
        "",
        "s3://b/k",
        DIGEST,
        1,
        "bento",
        None,
        [],
        None,
        None,
        None,
        {},
        {},
        {},
        "alice",
        NOW,
        NOW,
        1,
    )


def state(*versions: ModelVersion, aliases: dict[str, int] | None = None) -> ModelState:
    return ModelState(model(), {v.version: v for v in versions}, aliases or {})


def stages(ops: list[object]) -> dict[int, Stage]:
    return {op.version.version: op.version.stage for op in ops if isinstance(op, UpdateVersion)}


def test_create_model_refuses_a_taken_name() -> None:
    with pytest.raises(AlreadyExists) as err:
        create_model(state(), CTX, ModelCreate(name="iris"))
    assert err.value.field == "name"


def test_create_model_appends_an_audit_event() -> None:
    d = create_model(ModelState(None, {}, {}), CTX, ModelCreate(name="iris"))
    assert d.result.owner == "alice" and d.result.latest_version == 0
    audits = [op for op in d.ops if isinstance(op, Audit)]
    assert [a.action for a in audits] == ["model.create"] and audits[0].request_id == "r1"


def test_versions_are_numbered_after_the_latest() -> None:
    cmd = VersionCreate(artifact_uri="s3://b/k", digest=DIGEST)
    d = create_version(state(), CTX, "iris", cmd)
    assert d.result.version == 4
    bumped = [op.model for op in d.ops if isinstance(op, UpdateModel)]
    assert bumped[0].latest_version == 4
    assert any(isinstance(op, CreateVersion) for op in d.ops)


def test_a_version_needs_an_artifact_or_endpoint_and_a_digest() -> None:
    with pytest.raises(InvalidInput) as err:
        create_version(state(), CTX, "iris", VersionCreate())
    assert err.value.field == "artifact_uri"
    with pytest.raises(InvalidInput) as err:
        create_version(state(), CTX, "iris", VersionCreate(artifact_uri="s3://b/k"))
    assert err.value.field == "digest"


def test_promote_without_archive_is_refused_when_production_is_taken() -> None:
    s = state(version(1, Stage.PRODUCTION), version(2))
    with pytest.raises(StageOccupied) as err:
        transition_stage(s, CTX, "iris", 2, StageChange(stage=Stage.PRODUCTION), None)
    assert err.value.field == "archive_existing"


def test_promote_with_archive_moves_the_holder_to_archived() -> None:
    s = state(version(1, Stage.PRODUCTION), version(2), version(3, Stage.STAGING))
    d = transition_stage(
        s, CTX, "iris", 2, StageChange(stage=Stage.PRODUCTION, archive_existing=True), None
    )
    assert stages(d.ops) == {1: Stage.ARCHIVED, 2: Stage.PRODUCTION}
    assert d.result.stage == Stage.PRODUCTION and d.result.revision == 2
    assert sum(isinstance(op, Audit) for op in d.ops) == 2


def test_staging_with_archive_leaves_one_staging_version() -> None:
    s = state(version(1, Stage.STAGING), version(2, Stage.STAGING), version(3))
    d = transition_stage(
        s, CTX, "iris", 3, StageChange(stage=Stage.STAGING, archive_existing=True), None
    )
    assert stages(d.ops) == {1: Stage.ARCHIVED, 2: Stage.ARCHIVED, 3: Stage.STAGING}


def test_staging_without_archive_keeps_others() -> None:
    s = state(version(1, Stage.STAGING), version(2))
    d = transition_stage(s, CTX, "iris", 2, StageChange(stage=Stage.STAGING), None)
    assert stages(d.ops) == {2: Stage.STAGING}


def test_moving_to_the_current_stage_changes_nothing() -> None:
    s = state(version(1, Stage.PRODUCTION))
    d = transition_stage(s, CTX, "iris", 1, StageChange(stage=Stage.PRODUCTION), None)
    assert d.ops == [] and d.result.revision == 1


def test_missing_version_is_not_found() -> None:
    with pytest.raises(NotFound) as err:
        transition_stage(state(), CTX, "iris", 9, StageChange(stage=Stage.STAGING), None)
    assert err.value.field == "version"


def test_stale_if_match_is_refused_and_current_or_star_passes() -> None:
    v = version(1)
    s = state(v)
    with pytest.raises(PreconditionFailed):
        transition_stage(s, CTX, "iris", 1, StageChange(stage=Stage.STAGING), '"v1.0.1"')
    for tag in (version_etag(v), f"W/{version_etag(v)}", "*", f'"x", {version_etag(v)}'):
        transition_stage(s, CTX, "iris", 1, StageChange(stage=Stage.STAGING), tag)


def test_alias_set_and_move_are_audited_with_before_and_after() -> None:
    s = state(version(1), version(2), aliases={"champion": 1})
    d = set_alias(s, CTX, "iris", "champion", AliasChange(version=2), model_etag(model()))
    assert SetAlias("champion", 2, NOW) in d.ops
    event = next(op for op in d.ops if isinstance(op, Audit))
    assert bytes(event.before or b"") == b'{"version":1}'
    assert bytes(event.after or b"") == b'{"version":2}'
    assert d.result.aliases == ["champion"]


def test_alias_to_a_missing_version_is_not_found() -> None:
    with pytest.raises(NotFound):
        set_alias(state(), CTX, "iris", "champion", AliasChange(version=7), None)


def test_a_version_held_by_an_alias_cannot_be_deleted() -> None:
    s = state(version(1), aliases={"champion": 1, "b": 1})
    with pytest.raises(AliasInUse, match="b, champion"):
        delete_version(s, CTX, "iris", 1, None)


def test_deleting_a_model_deletes_and_audits_its_aliases() -> None:
    d = delete_model(state(aliases={"champion": 1}), CTX, "iris", None)
    assert DeleteAlias("champion") in d.ops and DeleteModel() in d.ops
    assert [op.action for op in d.ops if isinstance(op, Audit)] == ["alias.delete", "model.delete"]


def test_idempotent_create_remembers_and_replays() -> None:
    ctx = msgspec.structs.replace(CTX, idempotency_key="k1", fingerprint="f1")
    cmd = VersionCreate(artifact_uri="s3://b/k", digest=DIGEST)
    first = create_version(state(), ctx, "iris", cmd)
    remembered = next(op for op in first.ops if isinstance(op, RememberRequest))
    replay_state = msgspec.structs.replace(state(), replay=StoredRequest("f1", remembered.body))
    again = create_version(replay_state, ctx, "iris", cmd)
    assert again.ops == [] and again.result == first.result
    other = msgspec.structs.replace(ctx, fingerprint="f2")
    with pytest.raises(IdempotencyKeyReused):
        create_version(replay_state, other, "iris", cmd)
