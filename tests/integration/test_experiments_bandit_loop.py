"""The leader's experiment jobs on both real stores: the leading registry moves a running bandit
experiment's arms on its own (`BanditLoop`, a job of the rollout scheduler), toward the arm the
outcomes favour; it records each running experiment's reads when they change (`ReadLoop`), which
the console draws over time; and the store lists the running experiments of every model."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from litestar.testing import AsyncTestClient

from modelyard.app import create_app
from modelyard.settings import load_settings
from registry.experiments import stats as experiments
from registry.experiments.service import ExperimentService
from registry.experiments.stats import Experiment, Read
from registry.web.console import experiment_views
from registry.web.state import web_state
from tests.integration.test_api import ADMIN, Client, bearer
from tests.integration.test_experiments_bandit_api import in_app, policy_now, start
from tests.integration.test_rollouts_api import production

REBALANCE_S = 0.5
READ_S = 0.2


@pytest.fixture
async def client(store_url: str, tmp_path: Path) -> AsyncIterator[Client]:
    settings = load_settings(
        {},
        data_dir=str(tmp_path),
        database_url=store_url,
        admin_token=ADMIN,
        rollout_tick_s=0.05,
        bandit_rebalance_s=REBALANCE_S,
        experiment_read_s=READ_S,
    )
    async with AsyncTestClient(app=create_app(settings, "registry")) as c:
        c.headers.update(bearer(ADMIN))
        yield c


async def feed(client: Client, found: Experiment, first: int, count: int) -> None:
    """`count` users from `first` on, by key: v2 converts 25 %, v1 5 %."""
    outcomes = []
    for i in range(first, first + count):
        key = f"user-{i}"
        served = experiments.assign(found, 1, key)
        outcomes.append({"key": key, "value": int(i % 20 < (5 if served == 2 else 1))})
    r = await client.post(f"/api/v1/experiments/{found.id}/feedback", json={"outcomes": outcomes})
    assert r.status_code == 202, r.text


async def v2_share(client: Client) -> float:
    splits = (await policy_now(client))["splits"]
    return sum(s["weight"] for s in splits if s["version"] == 2)


async def test_the_leader_moves_a_bandit_toward_the_better_arm(client: Client) -> None:
    await production(client)
    raw = await start(client, mode="bandit")
    found = msgspec.convert(raw, Experiment)
    assert await v2_share(client) == 50.0
    service: ExperimentService = web_state(client.app.state).experiments
    running = await in_app(client, service.store.active_experiments)
    assert [e.id for e in running] == [found.id]

    await feed(client, found, 0, 4000)
    deadline = time.monotonic() + 60  # generous: a busy machine, a PostgreSQL per test
    shares = [50.0]
    while time.monotonic() < deadline and shares[-1] < 80.0:
        await asyncio.sleep(0.1)  # polling the traffic policy, not waiting for a ready state
        shares.append(await v2_share(client))
    assert shares[-1] >= 80.0, shares  # several steps of at most 10 points, all toward v2
    assert shares == sorted(shares)  # it never moved back
    shown = (await client.get(f"/api/v1/experiments/{found.id}")).json()
    allocation = shown["experiment"]["allocation"]
    assert allocation["updates"] >= 3
    best = {a["version"]: a["p_best"] for a in allocation["arms"]}
    assert best[2] > 0.95
    audit = (await client.get("/api/v1/models/iris/audit")).json()["items"]
    actors = {e["actor"] for e in audit if e["action"] == "experiment.rebalance"}
    assert actors == {"experiment-bandit"}


async def test_a_stopped_bandit_is_left_alone(client: Client) -> None:
    await production(client)
    raw: dict[str, Any] = await start(client, mode="bandit")
    found = msgspec.convert(raw, Experiment)
    await feed(client, found, 0, 2000)
    stopped = await client.post(f"/api/v1/experiments/{found.id}/stop", json={})
    assert stopped.status_code == 200, stopped.text
    service: ExperimentService = web_state(client.app.state).experiments
    assert await in_app(client, service.store.active_experiments) == []
    assert await in_app(client, service.rebalance_due, 0.0) == []  # nothing due, even at 0 s
    before = (await client.get(f"/api/v1/experiments/{found.id}")).json()["experiment"]
    assert before["phase"] == "Stopped"
    assert await in_app(client, service.rebalance_model, "iris") is None
    after = (await client.get(f"/api/v1/experiments/{found.id}")).json()["experiment"]
    assert after["allocation"] == before["allocation"]


async def test_the_leader_records_reads_when_the_tallies_change(client: Client) -> None:
    await production(client)
    raw = await start(client)
    found = msgspec.convert(raw, Experiment)
    service: ExperimentService = web_state(client.app.state).experiments

    async def history() -> list[Read]:
        return await in_app(client, service.history, found.id)

    async def until(count: int) -> list[Read]:
        deadline = time.monotonic() + 60
        while len(got := await history()) < count:
            assert time.monotonic() < deadline, got
            await asyncio.sleep(0.05)  # polling the store, not waiting for a ready state
        return got

    first = await until(1)  # the experiment's first read: no outcomes yet
    assert first[0].tallies == [] and first[0].weights == {1: 50.0, 2: 50.0}
    outcomes = [{"version": 1 + i % 2, "value": int(i % 5 == 0)} for i in range(200)]
    r = await client.post(f"/api/v1/experiments/{found.id}/feedback", json={"outcomes": outcomes})
    assert r.status_code == 202, r.text
    second = (await until(2))[-1]
    assert [(t.version, t.n, t.total) for t in second.tallies] == [(1, 100, 20.0), (2, 100, 20.0)]
    # nothing changes: no new read, however many times the loop looks
    loop_runs = time.monotonic() + 10 * READ_S
    while time.monotonic() < loop_runs:
        await asyncio.sleep(READ_S)
    assert len(await history()) == 2

    await client.post(
        "/ui/login"
    )  # (no session: the page itself is checked in the console's tests)
    page = await in_app(client, experiment_views.experiment_page, service, found.id)
    means = page.means_over_time  # the first read has no outcomes: nothing to draw there
    assert [(line.name, line.points) for line in means.lines] == [("v1 (control)", 1), ("v2", 1)]
    assert [line.points for line in page.weights_over_time.lines] == [2, 2]
