"""The web console at /ui: server-rendered pages on the registry's use cases (see app.py)."""

from registry.ui.app import console_routes
from registry.ui.render import template_config
from registry.ui.sessions import Sessions

__all__ = ["Sessions", "console_routes", "template_config"]
