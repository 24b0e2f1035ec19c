"""The composition root: settings in, a Litestar app out. Nothing is read at import time."""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, Literal

from litestar import Litestar
from litestar.openapi import OpenAPIConfig

from adapters.registry_tracing import tracing_middleware
from adapters.telemetry import Tracing, setup_tracing
from gateway.api import gateway_health_routes
from gateway.follow import HttpRoutes, RouteSource, registry_client
from gateway.report import HttpSink, WindowSink
from gateway.runtime import Dispatch, running_gateway
from gateway.status import gateway_status
from modelyard import __version__
from modelyard.bridges import InProcessRoutes, InProcessSink
from modelyard.components import open_components
from modelyard.readiness import ServingReadiness
from modelyard.settings import Settings
from registry.auth import TokenAuthority
from registry.errors import Conflict
from registry.web.api import registry_routes
from registry.web.api.context import request_id_middleware
from registry.web.api.metrics import RegistryMetrics, metrics_middleware
from registry.web.console.app import console_routes
from registry.web.console.render import template_config
from registry.web.console.sessions import Sessions
from registry.web.errors import EXCEPTION_HANDLERS

log = logging.getLogger("modelyard")

Role = Literal["serve", "registry", "gateway"]


async def _bootstrap_admin(authority: TokenAuthority, configured: str | None) -> None:
    try:
        secret = await authority.bootstrap_admin(configured)
    except Conflict:  # another replica registered the same configured token first
        return
    if secret is not None:
        print(
            f"modelyard: created the first admin token (shown once, store it now):\n{secret}",
            file=sys.stderr,
            flush=True,
        )


def create_app(
    settings: Settings,
    role: Role = "serve",
    *,
    env: Mapping[str, str] | None = None,
    tracing: Tracing | None = None,
) -> Any:
    """`registry`: the Litestar app. `serve` and `gateway`: the gateway's hot path in front of
    it (for `gateway` alone, the framework part only answers health probes).

    Tracing comes from `settings.tracing` and the `OTEL_*` variables of `env` (the process
    environment, read here once); tests hand in a `tracing` of their own (in-memory spans)."""
    dispatch = Dispatch(None)
    if tracing is None:
        tracing = setup_tracing(role, os.environ if env is None else env, settings.tracing)
    registry_metrics = RegistryMetrics()
    readiness = ServingReadiness(routes=role != "registry", timeout_s=settings.ready_timeout_s)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            if tracing is not None:  # last out: flushes the spans of everything below
                stack.callback(tracing.shutdown)
            app.state.tracing = tracing
            source: RouteSource
            sink: WindowSink
            if role == "gateway":
                client = registry_client(settings.registry_url, settings.registry_token or "")
                stack.push_async_callback(client.aclose)
                source, sink = HttpRoutes(client), HttpSink(client)
            else:
                parts = await stack.enter_async_context(
                    open_components(settings, role, tracing, registry_metrics)
                )
                app.state.registry = parts.registry
                app.state.authority = parts.authority
                app.state.artifacts = parts.artifacts
                app.state.registration = parts.registration
                app.state.deployments = parts.deployments
                readiness.deployments = parts.deployments
                app.state.feed = parts.feed
                app.state.rollouts = parts.rollouts
                app.state.rollout_scheduler = parts.rollout_scheduler
                app.state.experiments = parts.experiments
                app.state.webhooks = parts.webhooks
                app.state.ui_sessions = Sessions(parts.sessions)
                await _bootstrap_admin(parts.authority, settings.admin_token)
                source, sink = InProcessRoutes(parts.feed), InProcessSink(parts.registry)
            if role != "registry":
                dispatch.gateway = await stack.enter_async_context(
                    running_gateway(
                        source,
                        sink,
                        max_body=settings.gateway_max_body_bytes,
                        max_inflight=settings.gateway_max_inflight,
                        report_s=settings.gateway_report_s,
                        tracing=tracing,
                    )
                )
                if role == "serve":  # one /metrics: the gateway's, then the registry's
                    dispatch.gateway.metrics.extra = registry_metrics.render
                readiness.gateway = dispatch.gateway
                dispatch.gateway.readiness = readiness.check
            readiness.start()
            stack.push_async_callback(readiness.close)
            # Everything made so far (modules, the app, the stores) lives as long as the process:
            # out of the collector's sight, a full collection no longer walks it. Without this,
            # one such pass (about 80 ms here) stalled every request in flight.
            gc.freeze()
            yield
            dispatch.gateway = readiness.gateway = None

    routes = gateway_health_routes() if role == "gateway" else registry_routes() + console_routes()
    middleware: list[Any] = [request_id_middleware]
    if role != "gateway":
        middleware.append(metrics_middleware(registry_metrics))
        if tracing is not None:
            middleware.append(tracing_middleware(tracing))
    app = Litestar(
        route_handlers=routes,
        lifespan=[lifespan],
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        middleware=middleware,
        request_max_body_size=settings.max_body_bytes,
        openapi_config=OpenAPIConfig(title="modelyard", version=__version__, path="/schema"),
        template_config=None if role == "gateway" else template_config(),
        logging_config=None,
    )
    app.state.settings = settings
    app.state.registry_metrics = registry_metrics
    app.state.readiness = readiness
    if role == "registry":
        return app
    dispatch.api = app
    app.state.gateway_status = lambda: dispatch.gateway and gateway_status(dispatch.gateway)
    return dispatch
