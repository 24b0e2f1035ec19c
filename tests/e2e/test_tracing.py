"""One trace across processes: `modelyard serve` (its gateway) and real `bentoml serve`
processes of the example, both exporting OTLP/HTTP to a receiver in this test. A request
through the gateway makes one trace: the gateway's SERVER span, its upstream CLIENT span, and
BentoML's own SERVER span, each the child of the one before; the version header of every
answer is its span's `model.version`."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelyard.processes import ModelyardProcess
from tests.e2e.bento import V1, V2, make_bento_home, serve_many
from tests.otlp_receiver import OtlpReceiver, ReceivedSpan, otlp_receiver

pytestmark = pytest.mark.e2e

TOKEN = "tracing-e2e-admin-token-0123456789"
ROWS = {"input_series": [[5.1, 3.5, 1.4, 0.2]]}
APIS = [{"name": "classify", "inputs": ["input_series"]}]
GATEWAY_SERVICE = "modelyard-serve"
PASSTHROUGH = "POST /models/{name}/{api}"


def bentoml_tracing_config(path: Path, traces_url: str) -> Path:
    """BentoML 1.4's tracing settings. The file is read twice, with the v1 schema when bentoml
    is imported and with the v2 schema when a service starts; without a `version` key it
    passes both, and v2 takes `services.tracing` as every service's default."""
    path.write_text(
        "services:\n"
        "  tracing:\n"
        "    exporter_type: otlp\n"
        "    sample_rate: 1.0\n"
        "    otlp:\n"
        "      protocol: http\n"
        f"      endpoint: {traces_url}\n"
    )
    return path


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    with otlp_receiver() as found:
        yield found


@pytest.fixture(scope="module")
def yard(
    receiver: OtlpReceiver,
    iris_bentos: tuple[Path, Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ModelyardProcess]:
    home = make_bento_home(iris_bentos, tmp_path_factory.mktemp("home"))
    logs = tmp_path_factory.mktemp("logs")
    config = bentoml_tracing_config(logs / "bentoml-tracing.yaml", receiver.traces_url)
    traced = {"BENTOML_CONFIG": str(config)}
    with serve_many(home, logs, [(V1, traced), (V2, traced)]) as (v1, v2):
        proc = ModelyardProcess(
            "serve",
            tmp_path_factory.mktemp("yard"),
            TOKEN,
            extra_env={
                "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,  # turns tracing on (auto)
                "OTEL_BSP_SCHEDULE_DELAY": "100",  # export within 0.1 s, not 5 s
                "OTEL_TRACES_SAMPLER_ARG": "1.0",
            },
        )
        proc.start()
        try:
            with httpx.Client(
                base_url=f"{proc.url}/api/v1", headers={"Authorization": f"Bearer {TOKEN}"}
            ) as c:
                assert c.post("/models", json={"name": "iris"}).status_code == 201
                for server in (v1, v2):
                    body = {"endpoint": server.url, "apis": APIS}
                    assert c.post("/models/iris/versions", json=body).status_code == 201
                stage = {"stage": "Production"}
                assert c.post("/models/iris/versions/1/stage", json=stage).is_success
                split = {"splits": [{"version": 2, "weight": 50}]}
                assert c.put("/models/iris/traffic", json=split).status_code == 200
                revision = c.get("/routes").json()["revision"]
            wait_for_revision(proc, revision)
            yield proc
        finally:
            proc.stop()


def wait_for_revision(proc: ModelyardProcess, revision: int) -> None:
    deadline = time.monotonic() + 10
    while httpx.get(f"{proc.url}/v2/health/ready").json().get("revision") != revision:
        assert time.monotonic() < deadline, "the gateway never took the new routes"
        time.sleep(0.02)


def one_trace(receiver: OtlpReceiver, trace_id: str) -> dict[str, ReceivedSpan]:
    """Wait (bounded) for the trace's three spans; return them by role."""

    def complete(spans: list[ReceivedSpan]) -> bool:
        mine = [s for s in spans if s.trace_id == trace_id]
        return any(s.kind == "SERVER" and s.service != GATEWAY_SERVICE for s in mine) and any(
            s.kind == "SERVER" and s.service == GATEWAY_SERVICE for s in mine
        )

    receiver.wait_for(complete)
    spans = receiver.trace(trace_id)
    gateway = [s for s in spans if s.service == GATEWAY_SERVICE]
    servers = [s for s in gateway if s.kind == "SERVER"]
    clients = [s for s in gateway if s.kind == "CLIENT"]
    bento = [s for s in spans if s.service != GATEWAY_SERVICE and s.kind == "SERVER"]
    assert len(servers) == 1 and len(clients) == 1 and len(bento) == 1, spans
    return {"server": servers[0], "client": clients[0], "bento": bento[0]}


def test_one_request_makes_one_trace_through_gateway_and_bentoml(
    yard: ModelyardProcess, receiver: OtlpReceiver
) -> None:
    r = httpx.post(f"{yard.url}/models/iris/classify", json=ROWS, timeout=30)
    assert r.status_code == 200, r.text

    def gateway_span(spans: list[ReceivedSpan]) -> bool:
        return any(s.service == GATEWAY_SERVICE and s.name == PASSTHROUGH for s in spans)

    first = next(s for s in receiver.wait_for(gateway_span) if s.name == PASSTHROUGH)
    trace = one_trace(receiver, first.trace_id)
    server, client, bento = trace["server"], trace["client"], trace["bento"]
    assert server.parent_id == ""  # no traceparent came in: the gateway starts the trace
    assert client.parent_id == server.span_id
    assert bento.parent_id == client.span_id
    assert bento.service == "iris-classifier" and bento.name == "POST /classify"
    assert {server.trace_id, client.trace_id, bento.trace_id} == {first.trace_id}
    version = r.headers["x-modelyard-version"]
    assert server.attributes["model.version"] == version == client.attributes["model.version"]
    assert server.attributes["http.response.status_code"] == 200


def test_incoming_traceparent_and_every_version_header_match_their_spans(
    yard: ModelyardProcess, receiver: OtlpReceiver
) -> None:
    sent: list[tuple[str, str, httpx.Response]] = []
    with httpx.Client(base_url=yard.url, timeout=30) as c:
        for _ in range(20):
            trace_id, parent_id = secrets.token_hex(16), secrets.token_hex(8)
            headers = {"traceparent": f"00-{trace_id}-{parent_id}-01"}
            r = c.post("/models/iris/classify", json=ROWS, headers=headers)
            assert r.status_code == 200, r.text
            sent.append((trace_id, parent_id, r))
    assert {r.headers["x-modelyard-version"] for _, _, r in sent} == {"1", "2"}
    for trace_id, parent_id, r in sent:
        trace = one_trace(receiver, trace_id)
        attributes: dict[str, Any] = trace["server"].attributes
        assert trace["server"].parent_id == parent_id  # the caller's span is the parent
        assert attributes["model.version"] == r.headers["x-modelyard-version"]
        assert r.json()["model_version"] == "v" + attributes["model.version"]  # really served
        assert attributes["modelyard.variant"] == r.headers["x-modelyard-variant"]
        assert trace["bento"].parent_id == trace["client"].span_id
