"""The route feed on real stores (SQLite and PostgreSQL): deltas of exactly what changed,
removals, renames, a table shared by replicas with the same revision numbers, a full table for
a gateway too far behind or ahead, and one encoded answer shared by every waiter (issue 19)."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from adapters.sql.routes import changes_heard
from adapters.sql.store import SqlStore, open_metadata_store
from contract.routes import RouteChanges, apply_changes
from contract.traffic import Split, TrafficPolicy
from registry.catalog.changes import Caller
from registry.catalog.commands import AliasChange, ModelCreate, StageChange, VersionCreate
from registry.catalog.domain import Principal, Role, Stage
from registry.catalog.service import Registry
from registry.serving import feed as feed_module
from registry.serving.feed import RouteFeed

ALICE = Caller(principal=Principal(1, "alice", Role.ADMIN), request_id="req-1")


async def served_model(registry: Registry, name: str, versions: int = 1) -> None:
    await registry.create_model(ALICE, ModelCreate(name=name))
    for n in range(1, versions + 1):
        cmd = VersionCreate(endpoint=f"http://127.0.0.1:9/{name}/{n}", format="bento")
        await registry.create_version(ALICE, name, cmd)
    await registry.transition_stage(ALICE, name, 1, StageChange(stage=Stage.PRODUCTION), None)


async def test_a_change_sends_only_the_model_that_changed(store: SqlStore) -> None:
    registry = Registry(store)
    for i in range(12):
        await served_model(registry, f"m{i:02}", versions=2)
    feed = RouteFeed(registry, None, poll_s=0.05)
    try:
        first = await feed.wait(-1, 0)
        assert first is not None and first.full and len(first.models) == 12
        assert first.models["m03"].stable == 1 and set(first.models["m03"].versions) == {1, 2}

        nothing = await feed.wait(first.revision, 0.1)
        assert nothing is None  # no change, no answer

        await registry.set_alias(ALICE, "m03", "champion", AliasChange(version=2), None)
        delta = await feed.wait(first.revision, 5)
        assert delta is not None and not delta.full
        assert set(delta.models) == {"m03"} and delta.removed == []
        assert delta.models["m03"].aliases == {"champion": 2}
        assert delta.revision > first.revision

        await registry.rename_model(ALICE, "m05", "renamed")
        renamed = await feed.wait(delta.revision, 5)
        assert renamed is not None and set(renamed.models) == {"renamed"}
        assert renamed.removed == ["m05"]

        # a gateway that missed both answers gets both changes at once
        both = await feed.wait(first.revision, 0)
        assert both is not None and set(both.models) == {"m03", "renamed"}
        table = apply_changes(apply_changes(None, first), both)
        assert "m05" not in table.models and table.models["renamed"].stable == 1
        assert table.models == (await feed.wait(-1, 0) or first).models
    finally:
        await feed.close()


async def test_a_split_and_removal_reach_the_table(store: SqlStore) -> None:
    registry = Registry(store)
    await served_model(registry, "iris", versions=2)
    await served_model(registry, "gone")
    feed = RouteFeed(registry, None, poll_s=0.05)
    try:
        first = await feed.wait(-1, 0)
        assert first is not None
        policy = TrafficPolicy(splits=[Split(version=2, weight=10.0)])
        await registry.set_traffic(ALICE, "iris", policy, None)
        await registry.transition_stage(ALICE, "gone", 1, StageChange(stage=Stage.ARCHIVED), None)
        delta = await feed.wait(first.revision, 5)
        while delta is not None and "gone" not in delta.models:  # two changes, maybe two answers
            delta = await feed.wait(delta.revision, 5)
        assert delta is not None
        latest = await feed.wait(first.revision, 0)
        assert latest is not None and set(latest.models) == {"iris", "gone"}
        assert latest.models["iris"].policy.splits[0].weight == 10.0
        assert latest.models["gone"].stable is None
    finally:
        await feed.close()


async def test_replicas_number_changes_alike_and_see_each_others_writes(
    store_url: str,
) -> None:
    """Two feeds on two store connections, as two registry replicas: a write through one is
    seen by the other's watcher, under the same revision, so a gateway may move between them."""
    one, two = await open_metadata_store(store_url), await open_metadata_store(store_url)
    feeds: list[RouteFeed] = []
    try:
        writer = Registry(one)
        await served_model(writer, "iris", versions=2)
        feeds = [RouteFeed(Registry(s), None, poll_s=0.05) for s in (one, two)]
        first = [await f.wait(-1, 0) for f in feeds]
        assert first[0] is not None and first[1] is not None
        assert first[0].revision == first[1].revision
        waiting = asyncio.ensure_future(feeds[1].wait(first[1].revision, 10))
        await writer.set_alias(ALICE, "iris", "challenger", AliasChange(version=2), None)
        seen = await waiting  # the other replica's watcher found it
        assert seen is not None and set(seen.models) == {"iris"}
        here = await feeds[0].wait(first[0].revision, 10)
        assert here is not None and here.revision == seen.revision
        # a gateway that got a revision from one replica asks the other from it
        assert await feeds[1].wait(here.revision, 0.1) is None
    finally:
        for f in feeds:
            await f.close()
        await one.close()
        await two.close()


async def test_a_gateway_too_far_behind_or_ahead_gets_the_whole_table(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(feed_module, "KEPT", 4)
    registry = Registry(store)
    for i in range(3):
        await served_model(registry, f"m{i}")
    feed = RouteFeed(registry, None, poll_s=0.05)
    try:
        first = await feed.wait(-1, 0)
        assert first is not None
        revision = first.revision
        for i in range(6):  # more changes than are kept
            await registry.set_alias(ALICE, f"m{i % 3}", f"a{i}", AliasChange(version=1), None)
            answer = await feed.wait(revision, 5)
            assert answer is not None
            revision = answer.revision
        behind = await feed.wait(first.revision, 0)
        assert behind is not None and behind.full and len(behind.models) == 3
        ahead = await feed.wait(revision + 1000, 0)  # from a database since replaced
        assert ahead is not None and ahead.full and ahead.revision == revision
    finally:
        await feed.close()


async def test_every_waiter_gets_the_same_encoded_answer(store: SqlStore) -> None:
    registry = Registry(store)
    await served_model(registry, "iris", versions=2)
    feed = RouteFeed(registry, None, poll_s=0.05)
    try:
        first = await feed.wait(-1, 0)
        assert first is not None
        waiters = [asyncio.ensure_future(feed.wait_encoded(first.revision, 10)) for _ in range(50)]
        await asyncio.sleep(0)  # every waiter is parked on the feed
        await registry.set_alias(ALICE, "iris", "champion", AliasChange(version=2), None)
        answers = await asyncio.gather(*waiters)
        assert all(a is answers[0] for a in answers), "the answer was encoded more than once"
        assert answers[0] is not None
        decoded = msgspec.json.decode(answers[0], type=RouteChanges)
        assert set(decoded.models) == {"iris"} and not decoded.full
    finally:
        await feed.close()


async def test_on_postgresql_another_replicas_change_is_heard_without_polling(pg_url: str) -> None:
    """A change committed through one replica notifies the other's feed (LISTEN/NOTIFY): it
    answers its waiting gateway although its own poll would not run for a minute."""
    one, two = await open_metadata_store(pg_url), await open_metadata_store(pg_url)
    feed = RouteFeed(Registry(two), None, poll_s=60.0)
    try:
        writer = Registry(one)
        await served_model(writer, "iris", versions=2)
        first = await feed.wait(-1, 0)
        assert first is not None
        async with changes_heard(two.driver, feed.poke):
            waiting = asyncio.ensure_future(feed.wait(first.revision, 30))
            await asyncio.sleep(0.1)  # parked, and the watcher is in its minute-long wait
            started = asyncio.get_running_loop().time()
            await writer.set_alias(ALICE, "iris", "champion", AliasChange(version=2), None)
            seen = await waiting
            took = asyncio.get_running_loop().time() - started
        assert seen is not None and set(seen.models) == {"iris"}
        assert took < 10, f"heard after {took:.1f} s: by the poll, not the notification"
    finally:
        await feed.close()
        await one.close()
        await two.close()
