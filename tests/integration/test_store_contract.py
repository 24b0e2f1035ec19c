"""One contract, run on both metadata stores (SQLite file and a fresh PostgreSQL database)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from adapters.sql.sessions import SqlSessions
from adapters.sql.store import SqlStore, open_metadata_store
from contract.routes import ApiSpec
from contract.windows import TrafficWindow
from registry.catalog.changes import Caller, ModelFilter, VersionFilter
from registry.catalog.commands import AliasChange, ModelCreate, StageChange, VersionCreate
from registry.catalog.domain import MAX_NAME, Principal, Role, Stage, model_scope
from registry.catalog.service import Registry
from registry.errors import (
    AliasInUse,
    AlreadyExists,
    Conflict,
    IdempotencyKeyReused,
    NotFound,
    StageOccupied,
)
from registry.rollouts.service import RolloutService
from registry.rollouts.state import RolloutSpec
from registry.web.console.sessions import Sessions

ALICE = Caller(principal=Principal(1, "alice", Role.DEPLOYER), request_id="req-1")
DIGEST = "sha256:" + "cd" * 32
ARTIFACT = VersionCreate(artifact_uri="s3://bucket/iris.bento", digest=DIGEST, size_bytes=10)


@pytest.fixture
def registry(store: SqlStore) -> Registry:
    return Registry(store)


async def make(registry: Registry, name: str = "iris", versions: int = 0) -> None:
    await registry.create_model(ALICE, ModelCreate(name=name, tags={"team": "ml"}))
    for _ in range(versions):
        await registry.create_version(ALICE, name, ARTIFACT)


async def test_models_round_trip_and_names_are_unique(registry: Registry) -> None:
    await make(registry)
    got = await registry.get_model("iris")
    assert (got.name, got.tags, got.owner, got.latest_version) == (
        "iris",
        {"team": "ml"},
        "alice",
        0,
    )
    with pytest.raises(AlreadyExists):
        await make(registry)
    with pytest.raises(NotFound):
        await registry.get_model("nope")


@pytest.mark.parametrize(
    "name",
    ["m" * MAX_NAME, "модель " * (MAX_NAME // 7) + "м" * (MAX_NAME % 7), "churn model (eu)"],
    ids=["256-ascii", "256-cyrillic", "spaces"],
)
async def test_every_name_up_to_the_limit_round_trips(registry: Registry, name: str) -> None:
    """The one name limit (MAX_NAME, as MLflow's) holds on both stores: no column or index
    cuts or refuses a longer one (476 bytes of Cyrillic on PostgreSQL's TEXT and SQLite)."""
    await make(registry, name, versions=1)
    got = await registry.get_model(name)
    assert got.name == name and got.latest_version == 1
    assert (await registry.get_version(name, 1)).model == name
    listed = await registry.list_models(ModelFilter(prefix=name[:200]), None, 10)
    assert [m.name for m in listed] == [name]


async def test_version_fields_survive_the_store(registry: Registry) -> None:
    await make(registry)
    cmd = VersionCreate(
        artifact_uri="s3://bucket/k",
        digest=DIGEST,
        size_bytes=42,
        bento_tag="iris_classifier:abc",
        apis=[ApiSpec("classify", ["input_series"])],
        run_id="run-7",
        source="git+https://example.invalid/repo@abc",
        metrics={"accuracy": 0.97},
        params={"C": "1.0"},
        tags={"owner": "ml"},
        description="first",
    )
    created = await registry.create_version(ALICE, "iris", cmd)
    got = await registry.get_version("iris", 1)
    assert got == created
    assert got.metrics == {"accuracy": 0.97} and got.apis[0].inputs == ["input_series"]


async def test_parallel_creates_number_versions_without_gaps(registry: Registry) -> None:
    await make(registry)
    created = await asyncio.gather(
        *(registry.create_version(ALICE, "iris", ARTIFACT) for _ in range(64))
    )
    assert sorted(v.version for v in created) == list(range(1, 65))
    assert (await registry.get_model("iris")).latest_version == 64


async def test_parallel_promotions_leave_exactly_one_production(registry: Registry) -> None:
    await make(registry, versions=8)
    promote = StageChange(stage=Stage.PRODUCTION, archive_existing=True)
    results = await asyncio.gather(
        *(registry.transition_stage(ALICE, "iris", 1 + i % 8, promote, None) for i in range(64))
    )
    assert all(r.stage == Stage.PRODUCTION for r in results)
    prod = await registry.list_versions("iris", VersionFilter(stage=Stage.PRODUCTION), None, 100)
    assert len(prod) == 1
    report = await registry.verify_chain(model_scope("iris"))
    assert report.ok, report


async def test_promotion_without_archive_is_refused_and_changes_nothing(
    registry: Registry, store: SqlStore
) -> None:
    await make(registry, versions=2)
    await registry.transition_stage(ALICE, "iris", 1, StageChange(stage=Stage.PRODUCTION), None)
    head = await store.head(model_scope("iris"))
    with pytest.raises(StageOccupied):
        await registry.transition_stage(ALICE, "iris", 2, StageChange(stage=Stage.PRODUCTION), None)
    assert (await registry.get_version("iris", 2)).stage == Stage.NONE
    assert await store.head(model_scope("iris")) == head


async def test_the_store_itself_refuses_two_production_versions(
    registry: Registry, store: SqlStore
) -> None:
    """Belt and braces: a partial unique index, whatever the application does."""
    await make(registry, versions=2)
    await registry.transition_stage(ALICE, "iris", 1, StageChange(stage=Stage.PRODUCTION), None)
    with pytest.raises(Conflict):
        async with store.driver.writing() as conn:
            await conn.execute(
                "UPDATE model_versions SET stage = 'Production' WHERE version = 2", ()
            )
    assert (await registry.get_version("iris", 2)).stage == Stage.NONE


async def test_aliases_set_move_resolve_and_history(registry: Registry) -> None:
    await make(registry, versions=3)
    t0 = datetime.now(UTC)
    await registry.set_alias(ALICE, "iris", "champion", AliasChange(version=1), None)
    t1 = datetime.now(UTC)
    await asyncio.sleep(0.002)
    await registry.set_alias(ALICE, "iris", "champion", AliasChange(version=3), None)
    t2 = datetime.now(UTC)
    await asyncio.sleep(0.002)
    await registry.delete_alias(ALICE, "iris", "champion", None)
    assert (await registry.alias_at("iris", "champion", t0 - timedelta(seconds=1))).version is None
    assert (await registry.alias_at("iris", "champion", t1)).version == 1
    assert (await registry.alias_at("iris", "champion", t2)).version == 3
    assert (await registry.alias_at("iris", "champion", datetime.now(UTC))).version is None
    with pytest.raises(NotFound):
        await registry.resolve_alias("iris", "champion")
    await registry.set_alias(ALICE, "iris", "champion", AliasChange(version=2), None)
    resolved = await registry.resolve_alias("iris", "champion")
    assert resolved.version == 2 and resolved.aliases == ["champion"]
    assert (await registry.get_model("iris")).aliases == {"champion": 2}


async def test_a_version_held_by_an_alias_is_not_deleted(registry: Registry) -> None:
    await make(registry, versions=2)
    await registry.set_alias(ALICE, "iris", "champion", AliasChange(version=2), None)
    with pytest.raises(AliasInUse):
        await registry.delete_version(ALICE, "iris", 2, None)
    assert (await registry.get_version("iris", 2)).version == 2
    await registry.delete_version(ALICE, "iris", 1, None)
    with pytest.raises(NotFound):
        await registry.get_version("iris", 1)


async def test_artifact_uris_are_every_version_s_and_only_theirs(
    registry: Registry, store: SqlStore
) -> None:
    """What the sweeper keeps: a deleted version's artifact is no longer named."""
    assert await store.artifact_uris() == set()
    await registry.create_model(ALICE, ModelCreate(name="iris"))
    for n in (1, 2, 3):
        cmd = VersionCreate(artifact_uri=f"s3://bucket/{n}.bento", digest=DIGEST, size_bytes=1)
        await registry.create_version(ALICE, "iris", cmd)
    await registry.create_version(ALICE, "iris", VersionCreate(endpoint="http://10.0.0.1:3000"))
    await registry.delete_version(ALICE, "iris", 2, None)
    assert await store.artifact_uris() == {"s3://bucket/1.bento", "s3://bucket/3.bento"}


async def test_listing_filters_and_keyset_pages(registry: Registry) -> None:
    for name in ("alpha", "beta", "bravo", "charlie"):
        await make(registry, name, versions=1)
    await registry.transition_stage(ALICE, "bravo", 1, StageChange(stage=Stage.STAGING), None)
    await registry.set_alias(ALICE, "charlie", "champion", AliasChange(version=1), None)
    await registry.set_model_tag(ALICE, "beta", "team", "vision", None)

    async def names(where: ModelFilter) -> list[str]:
        return [m.name for m in await registry.list_models(where, None, 100)]

    assert await names(ModelFilter(prefix="b")) == ["beta", "bravo"]
    assert await names(ModelFilter(tag=("team", "vision"))) == ["beta"]
    assert await names(ModelFilter(stage=Stage.STAGING)) == ["bravo"]
    assert await names(ModelFilter(alias="champion")) == ["charlie"]
    first = await registry.list_models(ModelFilter(), None, 2)
    rest = await registry.list_models(ModelFilter(), first[-1].name, 2)
    assert [m.name for m in first + rest] == ["alpha", "beta", "bravo", "charlie"]


async def test_version_filters(registry: Registry) -> None:
    await make(registry, versions=5)
    await registry.set_version_tag(ALICE, "iris", 2, "data", "2026-q3", None)
    await registry.set_alias(ALICE, "iris", "challenger", AliasChange(version=4), None)
    await registry.transition_stage(ALICE, "iris", 5, StageChange(stage=Stage.STAGING), None)

    async def numbers(where: VersionFilter, before: int | None = None) -> list[int]:
        return [v.version for v in await registry.list_versions("iris", where, before, 100)]

    assert await numbers(VersionFilter()) == [5, 4, 3, 2, 1]
    assert await numbers(VersionFilter(), before=3) == [2, 1]
    assert await numbers(VersionFilter(tag=("data", "2026-q3"))) == [2]
    assert await numbers(VersionFilter(alias="challenger")) == [4]
    assert await numbers(VersionFilter(stage=Stage.STAGING)) == [5]


async def test_idempotency_key_replays_the_first_answer(registry: Registry) -> None:
    await make(registry)
    keyed = Caller(principal=ALICE.principal, idempotency_key="key-1", fingerprint="fp-1")
    runs = await asyncio.gather(
        *(registry.create_version(keyed, "iris", ARTIFACT) for _ in range(8))
    )
    assert {v.version for v in runs} == {1}
    assert (await registry.get_model("iris")).latest_version == 1
    other = Caller(principal=ALICE.principal, idempotency_key="key-1", fingerprint="fp-2")
    with pytest.raises(IdempotencyKeyReused):
        await registry.create_version(other, "iris", ARTIFACT)


async def test_audit_is_readable_per_model_and_version(registry: Registry) -> None:
    await make(registry, versions=2)
    reasoned = Caller(principal=ALICE.principal, request_id="req-9", reason="better recall")
    await registry.transition_stage(reasoned, "iris", 2, StageChange(stage=Stage.STAGING), None)
    events = await registry.audit_events("iris", None, 0, 100)
    assert [e.action for e in events] == [
        "model.create",
        "version.create",
        "version.create",
        "version.stage",
    ]
    assert [e.seq for e in events] == [1, 2, 3, 4]
    stage = events[-1]
    assert (stage.actor, stage.reason, stage.request_id, stage.version) == (
        "alice",
        "better recall",
        "req-9",
        2,
    )
    assert bytes(stage.before or b"") == b'{"stage":"None"}'
    only_v2 = await registry.audit_events("iris", 2, 0, 100)
    assert [e.action for e in only_v2] == ["version.create", "version.stage"]


async def test_tampering_with_the_audit_log_is_detected(
    registry: Registry, store: SqlStore
) -> None:
    await make(registry, versions=3)
    assert (await registry.verify_chain(model_scope("iris"))).ok
    async with store.driver.writing() as conn:
        await conn.execute(
            "UPDATE audit_events SET actor = 'mallory' WHERE scope = ? AND seq = 3",
            (model_scope("iris"),),
        )
    report = await registry.verify_chain(model_scope("iris"))
    assert not report.ok and report.broken_at == 3


async def test_migrations_apply_once(store_url: str) -> None:
    first = await open_metadata_store(store_url)
    try:
        assert await first.migrate(datetime.now(UTC)) == []
    finally:
        await first.close()


async def test_old_traffic_windows_are_pruned_but_not_what_a_rollout_reads(
    store: SqlStore, registry: Registry
) -> None:
    """Retention: windows older than the cutoff go; an active rollout's current step keeps
    its windows however old they are."""
    await make(registry, versions=2)
    await registry.transition_stage(ALICE, "iris", 1, StageChange(Stage.PRODUCTION), None)
    rollouts = RolloutService(registry, store)
    rollout = await rollouts.start(ALICE, "iris", RolloutSpec(candidate=2, steps=[50]))
    started = rollout.step_started_at
    day = timedelta(days=1)
    window = TrafficWindow("iris", 1, "stable", 10, 1, [1.0, 2.0])
    for age in (30 * day, 10 * day, day, timedelta(0)):
        await store.add_windows("gw-1", [window], started - age)
    await store.add_windows("gw-1", [window], started + timedelta(seconds=1))
    # keep 2 days, 40 days after the rollout began: its step still reads from `started`
    assert await rollouts.prune_windows(started + 40 * day, keep=2 * day) == 3
    (kept,) = await store.windows("iris", started - 365 * day)
    assert (kept.requests, kept.errors, kept.latencies_ms) == (20, 2, [1.0, 2.0] * 2)
    # the rollout is over: only the retention period counts
    await rollouts.abort(ALICE, rollout.id)
    assert await rollouts.prune_windows(started + 40 * day, keep=2 * day) == 2
    assert await store.windows("iris", started - 365 * day) == []
    assert await store.prune_windows(started + 365 * day) == 0


async def test_console_sessions_are_shared_by_replicas_and_expire(store: SqlStore) -> None:
    now = [1_800_000_000.0]
    one, two = (  # two registry replicas over one database
        Sessions(SqlSessions(store.driver), ttl_s=1000, idle_s=100, clock=lambda: now[0])
        for _ in range(2)
    )
    session = await one.create("token-hash")
    seen = await two.get(session.id)
    assert seen is not None and (seen.token_hash, seen.csrf) == ("token-hash", session.csrf)
    await two.flash(seen, "promoted")  # set by an action on one replica...
    page = await one.get(session.id)  # ...shown by the next page on the other
    assert page is not None and await one.take_flash(page) == "promoted"
    again = await two.get(session.id)
    assert again is not None and again.flash is None
    now[0] += 101  # idle too long
    assert await two.get(session.id) is None and await one.get(session.id) is None
    kept, dropped = await one.create("a"), await one.create("b")
    await two.drop(dropped.id)  # logging out on one replica ends it everywhere
    assert await one.get(dropped.id) is None and await one.get(kept.id) is not None
    now[0] += 2000
    assert await SqlSessions(store.driver).drop_expired_sessions(now[0]) == 1
