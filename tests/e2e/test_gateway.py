"""The gateway in front of real BentoML servers of the example (v1, v2): weighted and sticky
splits, pins, OIP, shadow traffic, a killed upstream, a registry outage, and bad input."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from modelyard.processes import ModelyardProcess
from tests.e2e.bento import V1, V2, BentoServer, make_bento_home, serve, serve_many

pytestmark = pytest.mark.e2e

ROWS = {"input_series": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}
FLAT = [5.1, 3.5, 1.4, 0.2, 6.7, 3.0, 5.2, 2.3]
APIS = [{"name": "classify", "inputs": ["input_series"]}]
TOKEN = "gateway-e2e-admin-token-0123456789"
PROPAGATION_S = 1.0


@pytest.fixture(scope="module")
def servers(
    iris_bentos: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, BentoServer]]:
    home = make_bento_home(iris_bentos, tmp_path_factory.mktemp("home"))
    logs = tmp_path_factory.mktemp("logs")
    specs = [(V1, {}), (V2, {}), (V2, {"IRIS_FAULT_LATENCY_MS": "400"})]
    with serve_many(home, logs, specs) as (v1, v2, slow):
        yield {"v1": v1, "v2": v2, "slow": slow, "home": home, "logs": logs}  # type: ignore[dict-item]


@pytest.fixture(scope="module")
def yard(
    servers: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ModelyardProcess]:
    """`modelyard serve` with iris v1 (Production), v2, v3 (= v1's server), v4 (slow v2)."""
    proc = ModelyardProcess("serve", tmp_path_factory.mktemp("yard"), TOKEN)
    proc.start()
    try:
        with api(proc) as c:
            assert c.post("/models", json={"name": "iris"}).status_code == 201
            for name in ("v1", "v2", "v1", "slow"):
                body = {"endpoint": servers[name].url, "apis": APIS}
                assert c.post("/models/iris/versions", json=body).status_code == 201
            assert c.post("/models/iris/versions/1/stage", json={"stage": "Production"}).is_success
            assert c.put("/models/iris/aliases/champion", json={"version": 2}).is_success
        yield proc
    finally:
        proc.stop()


def api(proc: ModelyardProcess) -> httpx.Client:
    return httpx.Client(
        base_url=f"{proc.url}/api/v1", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30
    )


def set_traffic(proc: ModelyardProcess, policy: dict[str, Any]) -> float:
    """Apply a policy; return the seconds until the gateway serves its route revision."""
    with api(proc) as c:
        assert c.put("/models/iris/traffic", json=policy).status_code == 200, policy
        started = time.perf_counter()
        revision = c.get("/routes").json()["revision"]
    deadline = started + 10
    while time.perf_counter() < deadline:
        ready = httpx.get(f"{proc.url}/v2/health/ready").json()
        if ready["revision"] >= revision:
            return time.perf_counter() - started
        time.sleep(0.01)
    pytest.fail(f"the gateway never reached route revision {revision}")


async def fire(
    proc: ModelyardProcess, n: int, headers: Any = None, concurrency: int = 32
) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=proc.url, limits=limits, timeout=30) as c:
        gate = asyncio.Semaphore(concurrency)

        async def one(i: int) -> httpx.Response:
            async with gate:
                h = headers(i) if callable(headers) else headers
                return await c.post("/models/iris/classify", json=ROWS, headers=h)

        # every task finishes before we look, so a failure cannot leak running requests
        done = await asyncio.gather(*(one(i) for i in range(n)), return_exceptions=True)
    failed = [repr(r) for r in done if isinstance(r, BaseException)]
    assert not failed, f"{len(failed)} requests got no answer: {failed[:3]}"
    return [r for r in done if isinstance(r, httpx.Response)]


def metric(proc: ModelyardProcess, name: str, **labels: str) -> float:
    """The first sample `name` with these labels (among others, in any order), or 0."""
    text = httpx.get(f"{proc.url}/metrics").text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and labels.items() <= sample.labels.items():
                return sample.value
    return 0.0


def windows_until(proc: ModelyardProcess, since: str, total: int) -> dict[str, int]:
    """Poll the registry until the gateways' windows since `since` hold `total` requests."""
    deadline = time.monotonic() + 30
    counts: dict[str, int] = {}
    while time.monotonic() < deadline:
        with api(proc) as c:
            rows = c.get("/models/iris/windows", params={"since": since}).json()
        counts = {f"{r['version']}/{r['variant']}": r["requests"] for r in rows}
        if sum(counts.values()) >= total:
            return counts
        time.sleep(0.2)
    pytest.fail(f"windows never reached {total} requests: {counts}")


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


async def test_weighted_split_over_10000_requests(yard: ModelyardProcess) -> None:
    since = now_iso()
    took = set_traffic(yard, {"splits": [{"version": 2, "weight": 30}]})
    assert took < PROPAGATION_S, f"weight change took {took:.2f}s to reach the gateway"
    answers = await fire(yard, 10_000)
    assert Counter(r.status_code for r in answers) == {200: 10_000}
    versions = Counter(r.headers["x-modelyard-version"] for r in answers)
    share = versions["2"] / 10_000
    assert abs(share - 0.30) <= 0.02, versions
    reported = windows_until(yard, since, 10_000)  # what the rollout judge will read
    assert reported == {"1/stable": versions["1"], "2/canary": versions["2"]}
    for r in answers[:200]:  # the header names the version that really answered
        assert r.json()["model_version"] == f"v{r.headers['x-modelyard-version']}"
        assert r.headers["x-modelyard-variant"] == (
            "canary" if r.headers["x-modelyard-version"] == "2" else "stable"
        )
        assert (
            r.headers["x-modelyard-model"] == "iris"
            and int(r.headers["x-modelyard-route-revision"]) > 0
        )


async def test_sticky_keys_never_flip_and_only_move_to_the_candidate(
    yard: ModelyardProcess,
) -> None:
    sticky = {
        "splits": [{"version": 2, "weight": 10}],
        "sticky": {"header": "x-user"},
        "salt": "e2e",
    }
    set_traffic(yard, sticky)
    keys = [f"user-{i}" for i in range(1000)]
    answers = await fire(yard, 3000, headers=lambda i: {"x-user": keys[i % 1000]})
    seen: dict[str, set[str]] = {}
    for i, r in enumerate(answers):
        seen.setdefault(keys[i % 1000], set()).add(r.headers["x-modelyard-version"])
    assert all(len(v) == 1 for v in seen.values()), "a key flipped between variants"
    before = {k: next(iter(v)) for k, v in seen.items()}
    set_traffic(yard, {**sticky, "splits": [{"version": 2, "weight": 30}]})
    again = await fire(yard, 1000, headers=lambda i: {"x-user": keys[i]})
    after = {keys[i]: r.headers["x-modelyard-version"] for i, r in enumerate(again)}
    assert [k for k in keys if before[k] == "2" and after[k] == "1"] == []
    moved = sum(before[k] == "1" and after[k] == "2" for k in keys)
    assert 100 < moved < 300, moved  # about 20% of the keys


async def test_pins_and_the_open_inference_protocol(yard: ModelyardProcess) -> None:
    set_traffic(yard, {})
    with httpx.Client(base_url=yard.url, timeout=30) as c:
        assert c.post("/models/iris@champion/classify", json=ROWS).json()["model_version"] == "v2"
        pinned = c.post("/models/iris/versions/1/classify", json=ROWS)
        assert (
            pinned.json()["model_version"] == "v1"
            and pinned.headers["x-modelyard-variant"] == "pinned"
        )
        by_header = c.post("/models/iris/classify", json=ROWS, headers={"x-modelyard-version": "2"})
        assert by_header.headers["x-modelyard-version"] == "2"
        tensor = {"name": "input_series", "shape": [2, 4], "datatype": "FP64", "data": FLAT}
        infer = {"id": "req-7", "inputs": [tensor]}
        r = c.post("/v2/models/iris/infer", json=infer)
        assert r.status_code == 200, r.text
        body = r.json()
        assert (body["id"], body["model_name"], body["model_version"]) == ("req-7", "iris", "1")
        outputs = {o["name"]: o for o in body["outputs"]}
        assert outputs["predictions"] == {
            "name": "predictions",
            "shape": [2],
            "datatype": "INT64",
            "data": [0, 2],
        }
        v2 = c.post("/v2/models/iris/versions/2/infer", json=infer).json()
        assert v2["model_version"] == "2"
        assert {o["name"]: o["data"] for o in v2["outputs"]} == {
            "predictions": [0, 2],
            "model_version": ["v2"],
        }
        meta = c.get("/v2/models/iris").json()
        assert meta["name"] == "iris" and "1" in meta["versions"]
        assert c.get("/v2/models/iris/ready").json() == {"name": "iris", "ready": True}


async def test_shadow_never_changes_the_answer_and_agreement_is_measured(
    yard: ModelyardProcess,
) -> None:
    direct = httpx.post(f"{yard.url}/models/iris/versions/1/classify", json=ROWS).content
    # v2 answers another model_version (the same predictions for these rows): the whole answer
    # never agrees, its predictions always do; v3 is v1's server
    cases = ((2, None, 0.0), (2, "predictions", 1.0), (3, None, 1.0))
    for shadow, field, expected in cases:
        compared_by = {"compare_field": field} if field else {}
        set_traffic(yard, {"shadow": {"version": shadow, "sample_percent": 100, **compared_by}})
        base = metric(
            yard, "modelyard_gateway_shadow_compared_total", model="iris", version=str(shadow)
        )
        agreed0 = metric(
            yard, "modelyard_gateway_shadow_agreed_total", model="iris", version=str(shadow)
        )
        answers = await fire(yard, 200, concurrency=8)
        assert all(r.status_code == 200 and r.content == direct for r in answers)
        assert {r.headers["x-modelyard-version"] for r in answers} == {"1"}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            compared = (
                metric(
                    yard,
                    "modelyard_gateway_shadow_compared_total",
                    model="iris",
                    version=str(shadow),
                )
                - base
            )
            dropped = metric(
                yard, "modelyard_gateway_shadow_dropped_total", model="iris", version=str(shadow)
            )
            if compared + dropped >= 200:
                break
            time.sleep(0.05)
        assert compared > 0
        agreed = (
            metric(yard, "modelyard_gateway_shadow_agreed_total", model="iris", version=str(shadow))
            - agreed0
        )
        assert agreed / compared == expected


async def test_a_killed_canary_costs_clients_no_errors(
    yard: ModelyardProcess, servers: dict[str, Any]
) -> None:
    logs = servers["logs"]
    with serve(servers["home"], V2, logs, {}) as doomed:
        with api(yard) as c:
            r = c.post("/models/iris/versions", json={"endpoint": doomed.url, "apis": APIS})
            number = r.json()["version"]
        set_traffic(yard, {"splits": [{"version": number, "weight": 50}]})
        with httpx.Client(base_url=yard.url, timeout=30) as client:
            first = [client.post("/models/iris/classify", json=ROWS) for _ in range(60)]
            assert {r.status_code for r in first} == {200}
            assert {r.headers["x-modelyard-version"] for r in first} == {"1", str(number)}
            doomed.crash()
            after = [client.post("/models/iris/classify", json=ROWS) for _ in range(200)]
        failed = [r.text for r in after if r.status_code != 200]
        assert failed == [], failed
        assert {r.json()["model_version"] for r in after} == {"v1"}
        ejected = metric(yard, "modelyard_gateway_upstream_breaker_open", upstream=doomed.url)
        assert ejected == 1.0


async def test_deadline_and_bad_input_get_clear_errors(yard: ModelyardProcess) -> None:
    set_traffic(
        yard, {"deadline_ms": 150, "rules": [{"header": "x-slow", "value": "1", "version": 4}]}
    )
    with httpx.Client(base_url=yard.url, timeout=30) as c:
        slow = c.post("/models/iris/classify", json=ROWS, headers={"x-slow": "1"})
        assert slow.status_code == 504 and slow.json()["error_code"] == "UPSTREAM_TIMEOUT"
        assert "150 ms" in slow.json()["message"]
        assert c.post("/models/nope/classify", json=ROWS).status_code == 404
        bad = c.post(
            "/v2/models/iris/infer",
            content=b"{not json",
            headers={"content-type": "application/json"},
        )
        assert bad.status_code == 400 and "error" in bad.json()
        wrong = {
            "inputs": [{"name": "input_series", "shape": [2, 4], "datatype": "FP64", "data": [1.0]}]
        }
        r = c.post("/v2/models/iris/infer", json=wrong)
        assert r.status_code == 400 and r.json()["field"] == "inputs[0].data", r.text
        assert c.get("/v2/health/live").json() == {"live": True}


@pytest.fixture
def outage_pair(
    servers: dict[str, Any], tmp_path: Path
) -> Iterator[tuple[ModelyardProcess, ModelyardProcess]]:
    registry = ModelyardProcess("registry", tmp_path / "registry", TOKEN)
    registry.start()
    gateway = ModelyardProcess(
        "gateway",
        tmp_path / "gateway",
        TOKEN,
        extra_env={
            "MODELYARD_REGISTRY_URL": registry.url,
            "MODELYARD_REGISTRY_TOKEN": TOKEN,
            "MODELYARD_GATEWAY_MAX_BODY_BYTES": "4096",
            "MODELYARD_GATEWAY_MAX_INFLIGHT": "2",
        },
    )
    try:
        with api(registry) as c:
            assert c.post("/models", json={"name": "iris"}).status_code == 201
            for name in ("v1", "slow"):
                c.post("/models/iris/versions", json={"endpoint": servers[name].url, "apis": APIS})
            assert c.post("/models/iris/versions/1/stage", json={"stage": "Production"}).is_success
        gateway.start()
        yield registry, gateway
    finally:
        gateway.stop()
        registry.stop()


async def test_the_gateway_serves_through_a_registry_outage(
    outage_pair: tuple[ModelyardProcess, ModelyardProcess],
) -> None:
    registry, gateway = outage_pair
    since = now_iso()
    with httpx.Client(base_url=gateway.url, timeout=30) as c:
        assert c.post("/models/iris/classify", json=ROWS).json()["model_version"] == "v1"
        assert windows_until(registry, since, 1) == {"1/stable": 1}  # reported over HTTP
        assert c.get("/v2/health/ready").json()["registry"] == "reachable"
        registry.kill9()
        deadline = time.monotonic() + 10
        while c.get("/v2/health/ready").json()["registry"] != "unreachable":
            assert time.monotonic() < deadline, "the gateway never noticed the outage"
            time.sleep(0.05)
        ready = c.get("/v2/health/ready")
        assert ready.status_code == 200 and ready.json()["ready"] is True
        answers = [c.post("/models/iris/classify", json=ROWS) for _ in range(50)]
        assert {r.status_code for r in answers} == {200}
        assert metric(gateway, "modelyard_gateway_registry_up") == 0.0
        big = c.post(
            "/models/iris/classify",
            content=b"x" * 5000,
            headers={"content-type": "application/json"},
        )
        assert big.status_code == 413 and big.json()["error_code"] == "REQUEST_TOO_LARGE"


async def test_load_is_shed_past_the_concurrency_limit(
    outage_pair: tuple[ModelyardProcess, ModelyardProcess],
) -> None:
    _, gateway = outage_pair
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as c:
        pinned = {"x-modelyard-version": "2"}  # the slow server: 400 ms a request
        answers = await asyncio.gather(
            *(c.post("/models/iris/classify", json=ROWS, headers=pinned) for _ in range(6))
        )
    codes = Counter(r.status_code for r in answers)
    assert codes[200] >= 2 and codes[503] >= 1, [r.text for r in answers]
    shed = next(r for r in answers if r.status_code == 503)
    assert shed.headers["retry-after"] == "1" and shed.json()["error_code"] == "OVERLOADED"
