"""Tracing in-process: `modelyard serve` built by create_app with an in-memory exporter, in
front of two small upstreams that echo the `traceparent` they receive. Every inference
response's version header matches its span's `model.version`; an incoming `traceparent` is
honoured; the upstream gets the CLIENT span's; a shadow copy is its own trace, linked; a gRPC
inference is traced as its HTTP twin."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import grpc
import pytest
from litestar.testing import AsyncTestClient
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from adapters.net import free_port
from adapters.telemetry import Tracing, setup_tracing
from gateway.grpc import grpc_predict_v2_pb2 as pb
from modelyard.app import create_app
from modelyard.settings import Settings, load_settings
from tests.http_threads import serving

ADMIN = "tracing-admin-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {ADMIN}"}
ROWS = {"input_series": [[5.1, 3.5, 1.4, 0.2]]}


@contextmanager
def echo_upstream(version: int) -> Iterator[str]:
    """A keep-alive HTTP/1.1 server (its own thread) answering
    `{"model_version": "vN", "traceparent": <the one it received>}`."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body leave in two writes: no 40 ms wait

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", "0")))
            body = json.dumps(
                {"model_version": f"v{version}", "traceparent": self.headers.get("traceparent")}
            ).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    with serving(Handler) as url:
        yield url


@asynccontextmanager
async def iris_on_echoes(settings: Settings, tracing: Tracing | None = None) -> AsyncIterator[Any]:
    """`modelyard serve` in-process (a test client) with model iris: v1 (Production) and v2,
    each on an echo upstream of its own."""
    with echo_upstream(1) as v1, echo_upstream(2) as v2:
        async with AsyncTestClient(app=create_app(settings, "serve", tracing=tracing)) as c:
            assert (await c.post("/api/v1/models", json={"name": "iris"}, headers=AUTH)).is_success
            for url in (v1, v2):
                body = {"endpoint": url, "apis": [{"name": "classify", "inputs": ["x"]}]}
                r = await c.post("/api/v1/models/iris/versions", json=body, headers=AUTH)
                assert r.status_code == 201, r.text
            r = await c.post(
                "/api/v1/models/iris/versions/1/stage", json={"stage": "Production"}, headers=AUTH
            )
            assert r.is_success, r.text
            yield c


@pytest.fixture
async def traced(tmp_path: Path) -> AsyncIterator[tuple[Any, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    tracing = setup_tracing("serve", {}, "off", processor=SimpleSpanProcessor(exporter))
    settings = load_settings(
        {},
        data_dir=str(tmp_path),
        admin_token=ADMIN,
        deployer="none",
        gateway_report_s=0.2,
        grpc_port=0,  # HTTP only: no fixed port bound by a test
    )
    async with iris_on_echoes(settings, tracing) as c:
        await set_traffic(c, {})  # and wait until the gateway serves it
        yield c, exporter


async def set_traffic(client: Any, policy: dict[str, Any]) -> None:
    r = await client.put("/api/v1/models/iris/traffic", json=policy, headers=AUTH)
    assert r.status_code == 200, r.text
    await wait_routes_served(client)


def spans_of(exporter: InMemorySpanExporter, trace_id: int) -> list[ReadableSpan]:
    return [
        s
        for s in exporter.get_finished_spans()
        if s.context is not None and s.context.trace_id == trace_id
    ]


def wait_spans(
    exporter: InMemorySpanExporter, found: Callable[[list[ReadableSpan]], bool]
) -> list[ReadableSpan]:
    deadline = time.monotonic() + 10
    while True:
        spans = list(exporter.get_finished_spans())
        if found(spans):
            return spans
        assert time.monotonic() < deadline, [s.name for s in spans]
        time.sleep(0.02)


async def test_every_version_header_matches_its_span(
    traced: tuple[Any, InMemorySpanExporter],
) -> None:
    client, exporter = traced
    await set_traffic(client, {"splits": [{"version": 2, "weight": 50}]})
    exporter.clear()
    answers = []
    for i in range(200):
        trace_id, parent_id = secrets.randbits(128) or 1, secrets.randbits(64) or 1
        traceparent = f"00-{trace_id:032x}-{parent_id:016x}-01"
        path = "/models/iris/classify" if i % 2 else "/v2/models/iris/infer"
        body = (
            ROWS
            if i % 2
            else {
                "inputs": [
                    {"name": "x", "shape": [4], "datatype": "FP64", "data": [5.1, 3.5, 1.4, 0.2]}
                ]
            }
        )
        r = await client.post(path, json=body, headers={"traceparent": traceparent})
        assert r.status_code == 200, r.text
        answers.append((trace_id, parent_id, r))
    versions = {r.headers["x-modelyard-version"] for _, _, r in answers}
    assert versions == {"1", "2"}  # both arms were seen, so the check below means something
    for trace_id, parent_id, r in answers:
        spans = spans_of(exporter, trace_id)
        servers = [s for s in spans if s.kind == SpanKind.SERVER]
        clients = [s for s in spans if s.kind == SpanKind.CLIENT]
        assert len(servers) == 1 and len(clients) == 1, [s.name for s in spans]
        server, upstream = servers[0], clients[0]
        attrs = dict(server.attributes or {})
        assert attrs["model.version"] == r.headers["x-modelyard-version"]
        assert attrs["modelyard.variant"] == r.headers["x-modelyard-variant"]
        assert attrs["modelyard.route.revision"] == int(r.headers["x-modelyard-route-revision"])
        assert attrs["model.name"] == "iris" and attrs["http.response.status_code"] == 200
        assert "modelyard.rollout.id" not in attrs  # a split set by hand: no rollout steers it
        # the caller's traceparent is honoured: the server span is its child
        assert server.parent is not None and server.parent.span_id == parent_id
        assert upstream.parent is not None and upstream.parent.span_id == server.context.span_id
        assert dict(upstream.attributes or {})["model.version"] == attrs["model.version"]
    # the upstream received the CLIENT span's traceparent, not the caller's
    passthrough = next(r for _, _, r in answers if r.request.url.path.startswith("/models/"))
    sent = passthrough.json()["traceparent"]
    _, sent_trace, sent_parent, flags = sent.split("-")
    spans = spans_of(exporter, int(sent_trace, 16))
    upstream = next(s for s in spans if s.kind == SpanKind.CLIENT)
    assert int(sent_parent, 16) == upstream.context.span_id and flags == "01"


async def test_a_request_without_traceparent_starts_a_trace(
    traced: tuple[Any, InMemorySpanExporter],
) -> None:
    client, exporter = traced
    exporter.clear()
    r = await client.post("/models/iris/classify", json=ROWS)
    assert r.status_code == 200
    _, trace, parent, _ = r.json()["traceparent"].split("-")
    spans = spans_of(exporter, int(trace, 16))
    server = next(s for s in spans if s.kind == SpanKind.SERVER)
    assert server.parent is None and server.name == "POST /models/{name}/{api}"
    assert int(parent, 16) == next(s for s in spans if s.kind == SpanKind.CLIENT).context.span_id


async def test_a_shadow_copy_is_a_linked_trace_of_its_own(
    traced: tuple[Any, InMemorySpanExporter],
) -> None:
    client, exporter = traced
    await set_traffic(client, {"shadow": {"version": 2, "sample_percent": 100}})
    exporter.clear()
    r = await client.post("/models/iris/classify", json=ROWS)
    assert r.status_code == 200 and r.headers["x-modelyard-version"] == "1"
    spans = wait_spans(exporter, lambda s: any(x.name.startswith("shadow ") for x in s))
    primary = next(s for s in spans if s.kind == SpanKind.SERVER and s.name.startswith("POST"))
    shadow = next(s for s in spans if s.name.startswith("shadow "))
    assert shadow.context.trace_id != primary.context.trace_id and shadow.parent is None
    assert [link.context.span_id for link in shadow.links] == [primary.context.span_id]
    attrs = dict(shadow.attributes or {})
    assert attrs["model.version"] == "2" and attrs["modelyard.variant"] == "shadow"
    assert attrs["modelyard.shadow.agreed"] is False  # v2 answers "v2"


async def test_spans_name_the_rollout_that_steers_the_model(
    traced: tuple[Any, InMemorySpanExporter],
) -> None:
    client, exporter = traced
    spec = {"candidate": 2, "steps": [50], "interval_s": 600, "min_sample_per_arm": 1000}
    r = await client.post("/api/v1/models/iris/rollouts", json=spec, headers=AUTH)
    assert r.status_code == 201, r.text
    rollout_id = r.json()["id"]
    deadline = time.monotonic() + 10
    while True:  # the controller's first tick sets the canary's weight
        policy = (await client.get("/api/v1/models/iris/traffic", headers=AUTH)).json()
        if policy.get("splits"):
            break
        assert time.monotonic() < deadline, policy
        await asyncio.sleep(0.05)
    assert policy["steered_by"] == rollout_id
    await wait_routes_served(client)
    exporter.clear()
    variants = set()
    for _ in range(40):
        r = await client.post("/models/iris/classify", json=ROWS)
        assert r.status_code == 200
        variants.add(r.headers["x-modelyard-variant"])
    servers = [s for s in exporter.get_finished_spans() if s.kind == SpanKind.SERVER]
    assert len(servers) == 40 and variants == {"stable", "canary"}
    assert {dict(s.attributes or {})["modelyard.rollout.id"] for s in servers} == {rollout_id}
    # a person cannot forge the field, and after the abort the spans no longer name it
    forged = await client.put(
        "/api/v1/models/iris/traffic", json={"steered_by": "ro-forged"}, headers=AUTH
    )
    assert forged.status_code == 409  # the rollout still steers the model
    r = await client.post(f"/api/v1/rollouts/{rollout_id}/abort", headers=AUTH)
    assert r.status_code == 200, r.text
    assert (await client.get("/api/v1/models/iris/traffic", headers=AUTH)).json().get(
        "steered_by", ""
    ) == ""
    forged = await client.put(
        "/api/v1/models/iris/traffic", json={"steered_by": "ro-forged"}, headers=AUTH
    )
    assert forged.status_code == 400 and forged.json()["field"] == "steered_by", forged.text
    await wait_routes_served(client)
    exporter.clear()
    r = await client.post("/models/iris/classify", json=ROWS)
    assert r.status_code == 200
    (server,) = [s for s in exporter.get_finished_spans() if s.kind == SpanKind.SERVER]
    assert "modelyard.rollout.id" not in dict(server.attributes or {})


async def wait_routes_served(client: Any) -> None:
    """Wait until the gateway serves the registry's current routes."""
    revision = (await client.get("/api/v1/routes", headers=AUTH)).json()["revision"]
    deadline = time.monotonic() + 10
    while (await client.get("/v2/health/ready")).json().get("revision") != revision:
        assert time.monotonic() < deadline, "the gateway never took the new routes"
        await asyncio.sleep(0.01)


async def test_a_grpc_inference_is_traced_like_its_http_twin(tmp_path: Path) -> None:
    """ModelInfer over gRPC: the `traceparent` metadata is honoured, the server span is named
    and described as for `POST /v2/models/{name}/infer`, and the upstream gets the CLIENT
    span's context (the echo upstream sends it back as an output)."""
    exporter = InMemorySpanExporter()
    tracing = setup_tracing("serve", {}, "off", processor=SimpleSpanProcessor(exporter))
    port = free_port()
    settings = load_settings(
        {}, data_dir=str(tmp_path), admin_token=ADMIN, deployer="none", grpc_port=port
    )
    request = pb.ModelInferRequest(model_name="iris")
    request.inputs.add(name="x", datatype="FP64", shape=[4]).contents.fp64_contents.extend(
        ROWS["input_series"][0]
    )
    trace_id, parent_id = secrets.randbits(128) or 1, secrets.randbits(64) or 1
    metadata = (("traceparent", f"00-{trace_id:032x}-{parent_id:016x}-01"),)
    async with iris_on_echoes(settings, tracing) as client:
        await wait_routes_served(client)
        exporter.clear()
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            infer = channel.unary_unary(
                "/inference.GRPCInferenceService/ModelInfer",
                request_serializer=pb.ModelInferRequest.SerializeToString,
                response_deserializer=pb.ModelInferResponse.FromString,
            )
            response = await infer(request, metadata=metadata, timeout=30)
    spans = spans_of(exporter, trace_id)
    (server,) = [s for s in spans if s.kind == SpanKind.SERVER]
    (upstream,) = [s for s in spans if s.kind == SpanKind.CLIENT]
    assert server.name == "POST /v2/models/{name}/infer"
    assert server.parent is not None and server.parent.span_id == parent_id
    attrs = dict(server.attributes or {})
    assert attrs["model.name"] == "iris" and attrs["http.response.status_code"] == 200
    assert attrs["model.version"] == response.model_version == "1"
    assert upstream.parent is not None and upstream.parent.span_id == server.context.span_id
    names = [o.name for o in response.outputs]
    raw = response.raw_output_contents[names.index("traceparent")]
    sent = raw[4:].decode()  # one BYTES element: its 4-byte length, then the text
    assert int(sent.split("-")[2], 16) == upstream.context.span_id
