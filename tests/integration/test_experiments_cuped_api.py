"""CUPED through the API on both real stores: outcomes fed back with a pre-experiment
covariate are kept as running sums beside the outcomes' (migration 13), the results adjust the
differences when every outcome has one (and show the adjustment), and not otherwise; a bad
covariate is a 400 naming it, with nothing written."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tests.integration.test_api import Client, error
from tests.integration.test_experiments_bandit_api import start
from tests.integration.test_rollouts_api import production

JSON = {"content-type": "application/json"}


@pytest.fixture
def client(steering_client: Client) -> Client:
    return steering_client


def outcomes(seed: int, n: int, covariates: bool) -> list[dict[str, Any]]:
    """Rewards y = x + noise per version (x: spend last month), v2 0.1 higher."""
    rng = np.random.default_rng(seed)
    found = []
    for i in range(n):
        version = 1 + i % 2
        x = float(rng.gamma(2.0, 1.0))
        y = x + float(rng.normal(0.1 * (version - 1), 0.7))
        item: dict[str, Any] = {"version": version, "value": y}
        if covariates:
            item["covariate"] = x
        found.append(item)
    return found


async def feed(client: Client, ex_id: str, items: list[dict[str, Any]]) -> None:
    for at in range(0, len(items), 5000):
        r = await client.post(
            f"/api/v1/experiments/{ex_id}/feedback", json={"outcomes": items[at : at + 5000]}
        )
        assert r.status_code == 202, r.text


async def results(client: Client, ex_id: str) -> dict[str, Any]:
    r = await client.get(f"/api/v1/experiments/{ex_id}")
    assert r.status_code == 200, r.text
    return dict(r.json()["results"])


async def test_covariates_are_stored_and_adjust_the_results(client: Client) -> None:
    await production(client)
    ex = await start(client, metric="reward")
    items = outcomes(1, 6000, covariates=True)
    await feed(client, ex["id"], items)
    res = await results(client, ex["id"])
    assert res["cuped"] is not None
    assert res["cuped"]["theta"] == pytest.approx(1.0, abs=0.1)  # y = x + noise
    assert res["cuped"]["variance_reduction"] == pytest.approx(0.8, abs=0.05)
    xs = [o["covariate"] for o in items]
    assert res["cuped"]["covariate_mean"] == pytest.approx(np.mean(xs))
    two = res["arms"][1]
    assert two["diff"] == pytest.approx(0.1, abs=0.06)
    assert [a["n"] for a in res["arms"]] == [3000, 3000]

    # one outcome without a covariate: the results go back to the raw differences
    await feed(client, ex["id"], [{"version": 2, "value": 1.0}])
    plain = await results(client, ex["id"])
    assert plain["cuped"] is None
    width = two["diff_ci_high"] - two["diff_ci_low"]
    raw = plain["arms"][1]
    assert raw["diff_ci_high"] - raw["diff_ci_low"] > 1.5 * width


async def test_a_bad_covariate_is_refused_whole(client: Client) -> None:
    await production(client)
    ex = await start(client, metric="reward")
    url = f"/api/v1/experiments/{ex['id']}/feedback"
    good = b'{"version": 1, "value": 1.0, "covariate": 2.0}'
    for bad in (b'"two"', b"1e400", b"[1]"):
        body = b'{"outcomes": [' + good + b', {"version": 2, "value": 1, "covariate": ' + bad
        r = await client.post(url, content=body + b"}]}", headers=JSON)
        error(r, 400, "INVALID_PARAMETER_VALUE")
        if bad != b"1e400":  # out of range: the decoder's message does not give the path
            assert "outcomes[1].covariate" in r.text, r.text
    res = await results(client, ex["id"])
    assert [a["n"] for a in res["arms"]] == [0, 0]  # nothing half-written
