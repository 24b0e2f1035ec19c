"""The gateway's route follower against fake sources: the last table kept on local disk and
served after a restart while the registry is down, a hung registry counted as down, and no
table at all answered 503 with Retry-After, never 404 (issue 18)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from contract.routes import ModelRoute, RouteChanges, RouteTable
from contract.traffic import TrafficPolicy
from gateway import follow
from gateway.errors import FeedUnavailable
from gateway.follow import RouteFollower, load_table
from tests.unit.test_gateway_front import answer, gateway, table


class Registry:
    """A route source: `table` while up, `FeedUnavailable` while down, no answer while hung."""

    def __init__(self, routes: RouteTable | None = None) -> None:
        self.routes = routes
        self.state = "up"
        self.asked: list[tuple[int, float]] = []

    async def next(self, after: int, wait_s: float) -> RouteChanges | None:
        self.asked.append((after, wait_s))
        if self.state == "down":
            raise FeedUnavailable("connection refused")
        if self.state == "hung":
            await asyncio.sleep(3600)
        if self.routes is not None and self.routes.revision > after:
            return RouteChanges(self.routes.revision, self.routes.models)  # a full table
        await asyncio.sleep(wait_s)
        return None

    async def close(self) -> None:
        return None


async def settle(condition: object, what: str) -> None:
    for _ in range(300):
        if callable(condition) and condition():
            return
        await asyncio.sleep(0.01)
    pytest.fail(what)


async def test_the_last_table_is_saved_and_served_after_a_restart_while_down(
    tmp_path: Path,
) -> None:
    saved = tmp_path / "data" / follow.SAVED_ROUTES
    registry = Registry(table())
    first = RouteFollower(registry, saved)
    await first.start()
    assert first.table == table() and first.registry_up
    await settle(saved.exists, "the table was never saved")
    assert load_table(saved) == table()
    await first.close()

    registry.state = "down"  # a restart during an outage
    second = RouteFollower(registry, saved)
    started = asyncio.get_running_loop().time()
    await second.start()
    assert asyncio.get_running_loop().time() - started < 1.0, "waited for a registry that is down"
    assert second.table == table() and not second.registry_up
    gw, _ = gateway(answer, table())
    gw.follower = second
    reply = await gw.handle("POST", "/models/iris/classify", [], b"{}")
    assert reply.status == 200
    await second.close()


async def test_the_first_poll_after_a_restart_takes_the_registry_table_whatever_its_revision(
    tmp_path: Path,
) -> None:
    saved = tmp_path / follow.SAVED_ROUTES
    saved.write_bytes(json.dumps({"revision": 99, "models": {}}).encode())
    newer = RouteTable(3, {"iris": table().models["iris"]})  # a registry started again
    registry = Registry(newer)
    follower = RouteFollower(registry, saved)
    await follower.start()
    assert follower.table == newer and registry.asked[0] == (-1, 0.0)
    await follower.close()


async def test_an_unreadable_saved_table_is_ignored(tmp_path: Path) -> None:
    saved = tmp_path / follow.SAVED_ROUTES
    saved.write_bytes(b"{not json")
    assert load_table(saved) is None


async def test_without_a_table_a_request_gets_503_to_retry_never_404() -> None:
    registry = Registry()
    registry.state = "down"
    follower = RouteFollower(registry)
    await follower.start(first_wait_s=0.1)
    gw, transport = gateway(answer, table())
    gw.follower = follower
    for path in ("/models/iris/classify", "/v2/models/iris/infer"):
        reply = await gw.handle("POST", path, [], b"{}")
        assert reply.status == 503, (path, reply)
        assert (b"retry-after", b"1") in reply.headers
        assert json.loads(reply.body)["error_code"] == "NO_ROUTE_TABLE"
    assert transport.requests == []
    await follower.close()


async def test_a_registry_that_never_answers_counts_as_down(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(follow, "WAIT_S", 0.2)
    monkeypatch.setattr(follow, "MARGIN_S", 0.2)
    monkeypatch.setattr(follow, "RETRY_S", 0.05)
    policy = TrafficPolicy()
    registry = Registry(RouteTable(1, {"m": ModelRoute("m", None, {}, {}, policy)}))
    follower = RouteFollower(registry)
    await follower.start()
    assert follower.registry_up
    registry.state = "hung"  # accepts the poll, never answers
    await settle(lambda: not follower.registry_up, "a hung registry was still reported up")
    assert follower.problem is not None and "no answer in 0.4 s" in follower.problem
    assert follower.table is not None and follower.table.revision == 1  # still served
    registry.state = "up"
    await settle(lambda: follower.registry_up, "the registry's return was not noticed")
    await follower.close()


class Deltas:
    """A route source that answers each poll with the next of `answers`, then waits."""

    def __init__(self, answers: list[RouteChanges]) -> None:
        self.answers = answers
        self.asked: list[int] = []

    async def next(self, after: int, wait_s: float) -> RouteChanges | None:
        self.asked.append(after)
        if self.answers:
            return self.answers.pop(0)
        await asyncio.sleep(wait_s)
        return None

    async def close(self) -> None:
        return None


async def test_changes_are_applied_to_a_new_table_and_the_latest_is_saved(
    tmp_path: Path,
) -> None:
    policy = TrafficPolicy()
    a, b, c = (ModelRoute(n, None, {}, {}, policy) for n in "abc")
    b2 = ModelRoute("b", 2, {}, {}, policy)
    source = Deltas(
        [
            RouteChanges(5, {"a": a, "b": b}),
            RouteChanges(7, {"b": b2, "c": c}, removed=["a"], full=False),
        ]
    )
    saved = tmp_path / follow.SAVED_ROUTES
    follower = RouteFollower(source, saved)
    await follower.start()
    first = follower.table
    await settle(lambda: follower.table is not None and follower.table.revision == 7, "no delta")
    assert first is not None and first.models == {"a": a, "b": b}, "the old table was modified"
    assert follower.table is not None and follower.table.models == {"b": b2, "c": c}
    assert source.asked[:2] == [-1, 5]  # the delta was asked for from the revision it had
    await follower.close()
    assert load_table(saved) == follower.table  # the last change is on disk after close
