"""Assemble a running gateway (route follower, upstream pools, metrics, shadow queue), and the
dispatcher that puts its hot path in front of the framework app in one process."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from gateway.follow import RouteFollower, RouteSource
from gateway.health import UpstreamChecks
from gateway.metrics import GatewayMetrics
from gateway.proxy import Gateway, Receive, Scope, Send
from gateway.report import REPORT_S, Reporter, WindowSink
from gateway.shadow import ShadowQueue
from gateway.traced import TracedGateway, TracedShadowQueue, Tracing
from gateway.upstream import Upstreams

GATEWAY_PREFIXES = ("/models/", "/v2/")
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
) -> AsyncIterator[Gateway]:
    """With `tracing`, the traced classes (gateway.traced); without, the plain ones."""
    upstreams = Upstreams()
    metrics = GatewayMetrics()
    shadow = (
        ShadowQueue(upstreams, metrics)
        if tracing is None
        else TracedShadowQueue(upstreams, metrics, tracing)
    )
    follower = RouteFollower(source)
    checks = UpstreamChecks(follower)
    reporter = Reporter(metrics, sink, report_s)
    shadow.start()
    await follower.start()
    checks.start()
    reporter.start()
    try:
        gateway = (
            Gateway(
                follower, upstreams, metrics, shadow, max_body=max_body, max_inflight=max_inflight
            )
            if tracing is None
            else TracedGateway(
                follower, upstreams, metrics, shadow,
                tracing=tracing, max_body=max_body, max_inflight=max_inflight,
            )
        )  # fmt: skip
        gateway.checks = checks
        yield gateway
    finally:
        await reporter.close()
        await checks.close()
        await follower.close()
        await shadow.close()
        await upstreams.close()


class Dispatch:
    """Inference paths and /metrics go straight to the gateway; the rest to `api`. Both as
    ASGI, and for the fast HTTP server (`handler_for`: the gateway, for the paths it serves)."""

    def __init__(self, api: Any) -> None:
        self.api = api
        self.gateway: Gateway | None = None

    def handler_for(self, method: str, path: str) -> Gateway | None:
        if method in _FAST_METHODS and (path.startswith(GATEWAY_PREFIXES) or path == "/metrics"):
            return self.gateway
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        gateway = self.gateway
        if gateway is not None and scope["type"] == "http":
            path: str = scope["path"]
            if path.startswith(GATEWAY_PREFIXES) or path == "/metrics":
                await gateway(scope, receive, send)
                return
        await self.api(scope, receive, send)
