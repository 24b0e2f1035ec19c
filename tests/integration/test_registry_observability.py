"""The registry's spans and metrics in-process (SQLite): a SERVER span per API call named by
its route template, store operations as its children, the rollout controller's verdicts and
actions as events on its tick span, and `/metrics` with requests, rollout phase, weight and
verdicts in Prometheus' text format."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from litestar.testing import AsyncTestClient
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from prometheus_client.parser import text_string_to_metric_families

from adapters.telemetry import setup_tracing
from modelyard.app import create_app
from modelyard.settings import load_settings
from tests.integration.test_api import ADMIN, Client, bearer
from tests.integration.test_rollouts_api import production, report, start, until


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of the sample `name{labels}` of a /metrics page (labels in any order)."""
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == name and found.labels == labels:
                return float(found.value)
    return None


@pytest.fixture
async def traced(tmp_path: Path) -> AsyncIterator[tuple[Client, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    tracing = setup_tracing("registry", {}, "off", processor=SimpleSpanProcessor(exporter))
    settings = load_settings({}, data_dir=str(tmp_path), admin_token=ADMIN, rollout_tick_s=0.05)
    async with AsyncTestClient(app=create_app(settings, "registry", tracing=tracing)) as c:
        c.headers.update(bearer(ADMIN))
        yield c, exporter


async def test_api_calls_and_store_operations_are_spans(
    traced: tuple[Client, InMemorySpanExporter],
) -> None:
    client, exporter = traced
    parent_trace, parent_span = 0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331
    r = await client.post(
        "/api/v1/models",
        json={"name": "iris"},
        headers={
            "traceparent": f"00-{parent_trace:032x}-{parent_span:016x}-01",
            "x-request-id": "req-42",
        },
    )
    assert r.status_code == 201, r.text
    spans = [s for s in exporter.get_finished_spans() if s.context.trace_id == parent_trace]
    server = next(s for s in spans if s.kind == SpanKind.SERVER)
    assert server.name == "POST /api/v1/models"
    assert server.parent is not None and server.parent.span_id == parent_span
    attrs = dict(server.attributes or {})
    assert attrs["http.response.status_code"] == 201 and attrs["modelyard.request_id"] == "req-42"
    store = [s for s in spans if s.name.startswith("store.")]
    assert store and all(s.parent.span_id == server.context.span_id for s in store if s.parent)
    assert "store.transact" in {s.name for s in store}
    got = await client.get("/api/v1/models/iris")
    assert got.status_code == 200
    names = {s.name for s in exporter.get_finished_spans()}
    assert "GET /api/v1/models/{name}" in names  # the template, not the model's name


async def test_verdicts_are_span_events_and_metrics(
    traced: tuple[Client, InMemorySpanExporter],
) -> None:
    client, exporter = traced
    await production(client)
    rollout = await start(client)
    rid = rollout["id"]
    await until(client, rid, {"Progressing"})
    metrics = (await client.get("/metrics")).text
    phase = "modelyard_registry_rollout_phase"
    assert sample(metrics, phase, model="iris", rollout=rid, phase="Progressing") == 1
    weight = "modelyard_registry_rollout_candidate_weight_ratio"
    assert sample(metrics, weight, model="iris", rollout=rid) == 0.1
    await report(client, 1, "stable", 500, 0, 20)
    await report(client, 2, "canary", 100, 30, 20)
    await until(client, rid, {"RolledBack"})
    ticks = [s for s in exporter.get_finished_spans() if s.name == "rollout.tick"]
    events = [e for s in ticks for e in s.events]
    verdicts = [e for e in events if e.name == "rollout.verdict"]
    assert verdicts and verdicts[-1].attributes is not None
    assert verdicts[-1].attributes["outcome"] == "fail"
    assert verdicts[-1].attributes["rollout.id"] == rid
    phases = [(e.attributes or {}).get("to") for e in events if e.name == "rollout.phase"]
    assert phases[-1] == "RolledBack"
    # store operations of a tick are children of the tick's span
    tick_ids = {s.context.span_id for s in ticks}
    assert any(
        s.name.startswith("store.") and s.parent is not None and s.parent.span_id in tick_ids
        for s in exporter.get_finished_spans()
    )
    metrics = (await client.get("/metrics")).text
    verdicts = "modelyard_registry_rollout_verdicts_total"
    assert sample(metrics, verdicts, model="iris", outcome="fail") == 1
    transitions = "modelyard_registry_rollout_transitions_total"
    assert sample(metrics, transitions, model="iris", phase="RolledBack") == 1
    assert f'rollout="{rid}"' not in metrics  # over: no gauge any more
    route = "/api/v1/models/{name}/rollouts"
    requests = "modelyard_registry_requests_total"
    assert sample(metrics, requests, method="POST", route=route, status="201") == 1
    assert "# TYPE modelyard_registry_request_duration_seconds histogram" in metrics
