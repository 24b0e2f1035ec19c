"""Assemble a running gateway (route follower, transport, resilience, metrics, shadow queue,
hooks), and the dispatcher that puts its hot path in front of the framework app in one process."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from gateway.follow import RouteFollower, RouteSource
from gateway.forward import Forwarder
from gateway.front import Gateway, Receive, Scope, Send
from gateway.health import UpstreamChecks
from gateway.metrics import GatewayMetrics
from gateway.report import REPORT_S, Reporter, WindowSink
from gateway.resilience import Resilient
from gateway.shadow import ShadowQueue
from gateway.spans import Tracing
from gateway.traced import TracingHooks
from gateway.transport.pool import Http1Transport

GATEWAY_PREFIXES = ("/models/", "/v2/")
#: Whole paths the gateway answers besides those under its prefixes.
GATEWAY_PATHS = frozenset({"/metrics", "/v2"})
_FAST_METHODS = frozenset({"GET", "POST"})


@contextlib.asynccontextmanager
async def running_gateway(
    source: RouteSource,
    sink: WindowSink,
    *,
    max_body: int,
    max_inflight: int,
    report_s: float = REPORT_S,
    tracing: Tracing | None = None,
    saved_routes: Path | None = None,
) -> AsyncIterator[Gateway]:
    """With `tracing`, OpenTelemetry spans through the gateway's hooks (gateway.traced); with
    `saved_routes`, the last route table is kept there and served after a restart until the
    registry answers (gateway.follow)."""
    transport = Http1Transport()
    metrics = GatewayMetrics()
    hooks = TracingHooks(tracing) if tracing is not None else None
    if tracing is not None:
        metrics.spans_dropped = lambda: tracing.dropped
    shadow = ShadowQueue(transport, metrics, hooks=hooks)
    follower = RouteFollower(source, saved_routes)
    checks = UpstreamChecks(follower)
    reporter = Reporter(metrics, sink, report_s)
    shadow.start()
    await follower.start()
    checks.start()
    reporter.start()
    try:
        resilient = Resilient(transport, max_inflight=max_inflight)
        forwarder = Forwarder(resilient, metrics, shadow)
        gateway = Gateway(follower, forwarder, hooks=hooks, max_body=max_body)
        gateway.checks = checks
        yield gateway
    finally:
        await reporter.close()
        await checks.close()
        await follower.close()
        await shadow.close()
        await transport.close()


class Dispatch:
    """Inference paths and /metrics go straight to the gateway; the rest to `api`. Both as
    ASGI, and for the fast HTTP server (`handler_for`: the gateway, for the paths it serves)."""

    def __init__(self, api: Any) -> None:
        self.api = api
        self.gateway: Gateway | None = None

    def handler_for(self, method: str, path: str) -> Gateway | None:
        if method in _FAST_METHODS and (path.startswith(GATEWAY_PREFIXES) or path in GATEWAY_PATHS):
            return self.gateway
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        gateway = self.gateway
        if gateway is not None and scope["type"] == "http":
            path: str = scope["path"]
            if path.startswith(GATEWAY_PREFIXES) or path in GATEWAY_PATHS:
                await gateway(scope, receive, send)
                return
        await self.api(scope, receive, send)
