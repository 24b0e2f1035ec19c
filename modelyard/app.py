"""The composition root: settings in, an ASGI app out. Nothing is read at import time.

    create_app(settings, "registry")   Litestar: REST, MLflow dialect, console, probes, /metrics
    create_app(settings, "serve")      Dispatch: the gateway's hot path in front of that app
    create_app(settings, "gateway")    Dispatch: the gateway's hot path in front of its probes

The registry's parts start in the app's lifespan and reach its handlers as one `WebState`
(registry/web/state.py); its request metrics and server spans are Litestar plugins.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Literal, overload

from litestar import Litestar
from litestar.datastructures import State
from litestar.openapi import OpenAPIConfig
from litestar.plugins import PluginProtocol

from adapters.json_logs import REQUEST_ID
from adapters.registry_tracing import TRACER_NAME
from adapters.telemetry import Tracing, setup_tracing
from gateway.api import gateway_health_routes
from gateway.follow import SAVED_ROUTES, HttpRoutes, RouteSource, registry_client
from gateway.grpc.server import GrpcBindError, running_grpc
from gateway.report import HttpSink, WindowSink
from gateway.runtime import Dispatch, running_gateway
from gateway.status import GatewayStatus, gateway_status
from modelyard import __version__
from modelyard.bridges import InProcessRoutes, InProcessSink
from modelyard.components import Components, open_components
from modelyard.readiness import ServingReadiness
from modelyard.settings import Settings, SettingsError
from registry.auth import TokenAuthority, revoked_admin_warning
from registry.errors import Conflict
from registry.web.api.context import request_id_middleware
from registry.web.app import registry_routes
from registry.web.console.render import template_config
from registry.web.console.sessions import Sessions
from registry.web.errors import REST_HANDLERS
from registry.web.metrics import RegistryMetrics, RegistryMetricsPlugin
from registry.web.state import WebState, install
from registry.web.tracing import RegistryTracingPlugin

log = logging.getLogger("modelyard")

Role = Literal["serve", "registry", "gateway"]


async def _bootstrap_admin(authority: TokenAuthority, configured: str | None) -> None:
    try:
        outcome = await authority.bootstrap_admin(configured)
    except Conflict:  # another replica registered the same configured token first
        return
    if outcome.revoked is not None:
        log.warning("%s", revoked_admin_warning(outcome.revoked))
    if outcome.created is not None:
        print(
            "modelyard: created the first admin token (shown once, store it now):\n"
            + outcome.created,
            file=sys.stderr,
            flush=True,
        )


def _web_state(
    parts: Components, readiness: ServingReadiness, dispatch: Dispatch | None, settings: Settings
) -> WebState:
    """The parts as the web layer sees them; with a gateway in this process (`dispatch`), what
    it shows the console."""

    def status() -> GatewayStatus | None:
        gateway = None if dispatch is None else dispatch.gateway
        return None if gateway is None else gateway_status(gateway)

    return WebState(
        registry=parts.registry,
        authority=parts.authority,
        artifacts=parts.artifacts,
        registration=parts.registration,
        deployments=parts.deployments,
        feed=parts.feed,
        rollouts=parts.rollouts,
        rollout_scheduler=parts.rollout_scheduler,
        experiments=parts.experiments,
        webhooks=parts.webhooks,
        sessions=Sessions(parts.sessions),
        readiness=readiness,
        gateway_status=None if dispatch is None else status,
        proxies=settings.trusted_proxies,
    )


@overload
def create_app(
    settings: Settings,
    role: Literal["registry"],
    *,
    env: Mapping[str, str] | None = None,
    tracing: Tracing | None = None,
) -> Litestar: ...


@overload
def create_app(
    settings: Settings,
    role: Literal["serve", "gateway"] = "serve",
    *,
    env: Mapping[str, str] | None = None,
    tracing: Tracing | None = None,
) -> Dispatch: ...


def create_app(
    settings: Settings,
    role: Role = "serve",
    *,
    env: Mapping[str, str] | None = None,
    tracing: Tracing | None = None,
) -> Litestar | Dispatch:
    """`registry`: the Litestar app. `serve` and `gateway`: the gateway's hot path in front of
    it (for `gateway` alone, the framework part only answers health probes).

    Tracing comes from `settings.tracing` and the `OTEL_*` variables of `env` (the process
    environment, read here once); tests hand in a `tracing` of their own (in-memory spans)."""
    if tracing is None:
        tracing = setup_tracing(role, os.environ if env is None else env, settings.tracing)
    readiness = ServingReadiness(routes=role != "registry", timeout_s=settings.ready_timeout_s)
    metrics = RegistryMetrics()
    dispatch = None if role == "registry" else Dispatch(None)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            if tracing is not None:  # last out: flushes the spans of everything below
                stack.callback(tracing.shutdown)
            source: RouteSource
            sink: WindowSink
            saved_routes = None  # `serve`: the registry is this process
            if role == "gateway":
                saved_routes = Path(settings.data_dir) / SAVED_ROUTES
                client = registry_client(settings.registry_url, settings.registry_token or "")
                stack.push_async_callback(client.aclose)
                source, sink = HttpRoutes(client), HttpSink(client)
            else:
                parts = await stack.enter_async_context(
                    open_components(settings, role, tracing, metrics)
                )
                install(app.state, _web_state(parts, readiness, dispatch, settings))
                readiness.deployments = parts.deployments
                await _bootstrap_admin(parts.authority, settings.admin_token)
                source, sink = InProcessRoutes(parts.feed), InProcessSink(parts.registry)
            if dispatch is not None:
                gateway = await stack.enter_async_context(
                    running_gateway(
                        source,
                        sink,
                        max_body=settings.gateway_max_body_bytes,
                        max_inflight=settings.gateway_max_inflight,
                        report_s=settings.gateway_report_s,
                        tracing=tracing,
                        saved_routes=saved_routes,
                    )
                )
                if role == "serve":  # one /metrics: the gateway's, then the registry's
                    gateway.metrics.extra = metrics.render
                dispatch.gateway = readiness.gateway = gateway
                gateway.readiness = readiness.check
                if settings.grpc_port:  # stopped before the gateway it calls
                    grpc = running_grpc(
                        gateway,
                        settings.host,
                        settings.grpc_port,
                        max_message=settings.gateway_max_body_bytes,
                        name="modelyard",
                        version=__version__,
                    )
                    try:
                        await stack.enter_async_context(grpc)
                    except GrpcBindError as exc:  # named as the setting it comes from
                        raise SettingsError(
                            f"grpc_port (MODELYARD_GRPC_PORT): {exc}; "
                            "choose a free port, or 0 for no gRPC"
                        ) from None
            readiness.start()
            stack.push_async_callback(readiness.close)
            # Everything made so far (modules, the app, the stores) lives as long as the process:
            # out of the collector's sight, a full collection no longer walks it. Without this,
            # one such pass (about 80 ms here) stalled every request in flight.
            gc.freeze()
            yield
            if dispatch is not None:
                dispatch.gateway = readiness.gateway = None

    app = Litestar(
        route_handlers=gateway_health_routes() if role == "gateway" else registry_routes(),
        lifespan=[lifespan],
        exception_handlers=REST_HANDLERS,
        middleware=[request_id_middleware],
        plugins=[] if role == "gateway" else _registry_plugins(metrics, tracing),
        request_max_body_size=settings.max_body_bytes,
        openapi_config=OpenAPIConfig(title="modelyard", version=__version__, path="/schema"),
        template_config=None if role == "gateway" else template_config(),
        logging_config=None,
        # gateway/api.py's /readyz reads the readiness there; the registry's reads its WebState
        state=State({"readiness": readiness}) if role == "gateway" else None,
    )
    if dispatch is None:
        return app
    dispatch.api = app
    return dispatch


def _registry_plugins(metrics: RegistryMetrics, tracing: Tracing | None) -> list[PluginProtocol]:
    """Request metrics (and /metrics), then a SERVER span per call when tracing is on: the
    spans start inside the metrics' timing, after the request id is known."""
    plugins: list[PluginProtocol] = [RegistryMetricsPlugin(metrics)]
    if tracing is not None:
        tracer = tracing.tracer(TRACER_NAME)
        plugins.append(RegistryTracingPlugin(tracer, tracing.propagator, REQUEST_ID))
    return plugins
