"""The composition root: settings in, a Litestar app out. Nothing is read at import time."""

from __future__ import annotations

import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Literal

from litestar import Litestar
from litestar.openapi import OpenAPIConfig

from adapters.stores import open_metadata_store
from gateway.api import gateway_routes
from modelyard import __version__
from modelyard.settings import Settings
from registry.api import registry_routes
from registry.api.context import request_id_middleware
from registry.api.errors import EXCEPTION_HANDLERS
from registry.auth import TokenAuthority
from registry.errors import Conflict
from registry.service import Registry, utc_now

log = logging.getLogger("modelyard")

Role = Literal["serve", "registry"]


def create_app(settings: Settings, role: Role = "serve") -> Litestar:
    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        store = await open_metadata_store(
            settings.metadata_url, sqlite_synchronous=settings.sqlite_synchronous
        )
        app.state.registry = Registry(store, clock=utc_now)
        app.state.authority = authority = TokenAuthority(store, clock=utc_now)
        try:
            secret = await authority.bootstrap_admin(settings.admin_token)
        except Conflict:  # another replica registered the same configured token first
            secret = None
        if secret is not None:
            print(
                f"modelyard: created the first admin token (shown once, store it now):\n{secret}",
                file=sys.stderr,
                flush=True,
            )
        try:
            yield
        finally:
            await store.close()

    routes = registry_routes()
    if role == "serve":
        routes += gateway_routes()
    app = Litestar(
        route_handlers=routes,
        lifespan=[lifespan],
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        middleware=[request_id_middleware],
        request_max_body_size=settings.max_body_bytes,
        openapi_config=OpenAPIConfig(title="modelyard", version=__version__, path="/schema"),
        logging_config=None,
    )
    app.state.settings = settings
    return app
