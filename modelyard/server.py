"""Run an app under uvicorn (uvloop + httptools: the fastest pairing measured here)."""

from __future__ import annotations

import uvicorn

from modelyard.app import Role, create_app
from modelyard.settings import Settings


def run(settings: Settings, role: Role) -> None:
    app = create_app(settings, role)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level=settings.log_level,
        timeout_graceful_shutdown=5,
    )
