"""Run an app under uvicorn (uvloop + httptools: the fastest pairing measured here)."""

from __future__ import annotations

import logging
from importlib.machinery import EXTENSION_SUFFIXES
from typing import Any

import uvicorn

from adapters.json_logs import configure_logging
from gateway.runtime import Dispatch
from gateway.server import fast_http
from gateway.server.fast_http import protocol_class
from gateway.server.protocol import CoalescingHttpToolsProtocol
from modelyard.app import Role, create_app
from modelyard.settings import Settings

KEEP_ALIVE_S = 75
log = logging.getLogger("modelyard")


def gateway_build() -> str:
    """How the gateway's hot path runs: "compiled" (mypyc, as the Docker image builds it;
    setup.py) or "python" (an editable install, `make run`)."""
    file = fast_http.__file__ or ""
    return "compiled" if file.endswith(tuple(EXTENSION_SUFFIXES)) else "python"


def run(settings: Settings, role: Role) -> None:
    extra: dict[str, Any] = {}
    if settings.log_format == "json":  # every logger, uvicorn's too, through one JSON handler
        configure_logging(settings.log_level, settings.log_format)
        extra["log_config"] = None
    app = create_app(settings, role)
    # With a gateway, its paths are answered by our own HTTP/1.1 protocol, the rest by uvicorn's.
    protocol = protocol_class(app) if isinstance(app, Dispatch) else CoalescingHttpToolsProtocol
    if isinstance(app, Dispatch):
        log.info("the gateway's hot path runs %s", gateway_build())
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http=protocol,
        # No `server` header, and no X-Forwarded-* rewriting: nothing here reads the client's
        # address, and both cost every request (the middleware copies the headers into a dict).
        server_header=False,
        proxy_headers=False,
        # Off by default: it costs every request on the hot path (MODELYARD_ACCESS_LOG=true).
        access_log=settings.access_log,
        # Longer than clients' idle timeouts (httpx: 5 s, like uvicorn's default): with equal
        # timeouts a client may send on a connection the server is closing at that instant.
        timeout_keep_alive=KEEP_ALIVE_S,
        log_level=settings.log_level,
        timeout_graceful_shutdown=5,
        **extra,
    )
