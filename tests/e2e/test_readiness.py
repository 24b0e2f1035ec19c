"""Readiness on real processes. `modelyard serve` restarted on the same data folder, with the
iris example's v1 (Production) and v2 (Staging, 50 % of the traffic) served by real
`bentoml serve`: /readyz is 503, naming the versions on their way, until both answer, and no
request sent from the moment it turns 200 fails. `modelyard gateway` is ready once its route
table arrived and the endpoint of its Production version answers."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from contract.health import ON_THE_WAY
from modelyard.processes import ModelyardProcess
from tests.e2e.test_serving import DEPLOY_TIMEOUT_S, ROWS, api, wait_for
from tests.integration.test_readiness import APIS, model_server

pytestmark = pytest.mark.e2e

PATHS = {
    "1": "/models/iris/versions/1/classify",
    "2": "/models/iris/versions/2/classify",
    "any": "/models/iris/classify",
}
ROUNDS = 15


def upload(c: httpx.Client, archive: Path) -> int:
    with archive.open("rb") as body:
        r = c.post(
            "/models/iris/versions/bento",
            content=body,
            headers={"Content-Type": "application/octet-stream"},
        )
    assert r.status_code == 201, r.text
    return int(r.json()["version"])


def test_after_a_restart_readyz_waits_for_both_versions_and_then_nothing_fails(
    iris_bentos: tuple[Path, Path], tmp_path: Path, admin_token: str
) -> None:
    data = tmp_path / "data"
    first = ModelyardProcess("serve", data, admin_token)
    second = ModelyardProcess("serve", data, admin_token)
    try:
        first.start()
        with api(first, admin_token) as c:
            assert c.post("/models", json={"name": "iris"}).status_code == 201
            assert [upload(c, archive) for archive in iris_bentos] == [1, 2]
            for number, stage in ((1, "Production"), (2, "Staging")):
                r = c.post(f"/models/iris/versions/{number}/stage", json={"stage": stage})
                assert r.status_code == 200, r.text
            split = {"splits": [{"version": 2, "weight": 50}]}
            assert c.put("/models/iris/traffic", json=split).status_code == 200
            for number in (1, 2):
                wait_for(c, number, "ready")
        first.stop()

        second.start(until="live")  # the process answers; its model servers start now
        answers: list[httpx.Response] = []
        deadline = time.monotonic() + DEPLOY_TIMEOUT_S
        with httpx.Client(base_url=second.url, timeout=30) as c:
            while not answers or answers[-1].status_code != 200:
                assert time.monotonic() < deadline, answers[-1].text
                answers.append(c.get("/readyz"))
                time.sleep(0.02)
            # from the moment it says ready, every request is answered, pinned or split
            sent = [
                (key, c.post(path, json=ROWS)) for _ in range(ROUNDS) for key, path in PATHS.items()
            ]
        failed = [(key, r.status_code, r.text) for key, r in sent if r.status_code != 200]
        assert failed == []
        served = Counter((key, r.headers["x-modelyard-version"]) for key, r in sent)
        assert served[("1", "1")] == served[("2", "2")] == ROUNDS
        assert {v for key, v in served if key == "any"} == {"1", "2"}  # the split serves both

        waiting = [r for r in answers if r.status_code == 503]
        assert waiting, "readyz never said 503 while the model servers started"
        assert {v["version"] for v in waiting[0].json()["not_ready"]} == {1, 2}
        for r in waiting:
            body = r.json()
            assert body["status"] == "starting" and body["detail"].startswith("waiting for")
            on_the_way = {v["version"] for v in body["not_ready"] if v["status"] in ON_THE_WAY}
            assert on_the_way and on_the_way <= {1, 2}, body
        ready = answers[-1].json()
        assert ready["status"] == "ok" and "not_ready" not in ready and "detail" not in ready
        print(f"\nrestart: {len(waiting)} answers of 503 before ready")
    finally:
        second.stop()
        first.stop()


def test_a_gateway_is_ready_once_its_routes_and_its_upstreams_answer(
    tmp_path: Path, admin_token: str
) -> None:
    up = threading.Event()
    with model_server(1, up) as v1:
        registry = ModelyardProcess("registry", tmp_path / "registry", admin_token)
        gateway = ModelyardProcess(
            "gateway",
            tmp_path / "gateway",
            admin_token,
            extra_env={
                "MODELYARD_REGISTRY_URL": registry.url,
                "MODELYARD_REGISTRY_TOKEN": admin_token,
            },
        )
        try:
            registry.start()
            with api(registry, admin_token) as c:
                assert c.post("/models", json={"name": "iris"}).status_code == 201
                body = {"endpoint": v1, "apis": APIS}
                assert c.post("/models/iris/versions", json=body).status_code == 201
                stage = {"stage": "Production"}
                assert c.post("/models/iris/versions/1/stage", json=stage).status_code == 200
            gateway.start(until="live")
            with httpx.Client(base_url=gateway.url, timeout=30) as c:
                deadline = time.monotonic() + 30
                while (r := c.get("/readyz")).json().get("not_ready") is None:
                    assert time.monotonic() < deadline, r.text  # (the route table first)
                    time.sleep(0.02)
                assert r.status_code == 503 and r.json()["status"] == "starting"
                assert [(v["version"], v["status"]) for v in r.json()["not_ready"]] == [
                    (1, "checking")
                ]
                assert c.get("/v2/health/ready").status_code == 503
                up.set()
                while (r := c.get("/readyz")).status_code != 200:
                    assert time.monotonic() < deadline, r.text
                    time.sleep(0.02)
                assert r.json() == {"status": "ok"}
                ready = c.get("/v2/health/ready")
                assert ready.status_code == 200 and ready.json()["ready"] is True
                answer = c.post("/models/iris/classify", json=ROWS)
                assert answer.status_code == 200 and answer.json() == {"model_version": "v1"}
        finally:
            gateway.stop()
            registry.stop()
