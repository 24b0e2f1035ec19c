"""The registry's REST API (Litestar): `/api/v1` plus health probes."""

from registry.web.api.app import registry_routes

__all__ = ["registry_routes"]
