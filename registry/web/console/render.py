"""Rendering console pages: the Jinja environment, the context every page gets, and the HTML
answers to errors (a message, never a stack trace)."""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Redirect, Template
from litestar.template import TemplateConfig
from litestar.types import ExceptionHandlersMap

from registry.catalog.domain import Role
from registry.errors import RegistryError
from registry.web.console.security import POLL_HEADER, UI_PATH, LoginRequired, sessions_of
from registry.web.console.sessions import Session
from registry.web.errors import status_of

log = logging.getLogger("modelyard.ui")

HERE: Final = Path(__file__).parent
TEMPLATES: Final = HERE / "templates"
STATIC: Final = HERE / "static"
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
        " form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

Req = Request[Any, Any, Any]


def _when(at: datetime | None) -> str:
    return "" if at is None else at.strftime("%Y-%m-%d %H:%M:%S UTC")


def _num(value: float | None, digits: int = 3) -> str:
    return "\u2013" if value is None else f"{value:.{digits}g}"


def template_config() -> TemplateConfig[JinjaTemplateEngine]:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES), autoescape=True, undefined=StrictUndefined
    )
    env.filters["when"] = _when
    env.filters["num"] = _num
    env.filters["pct"] = lambda v: "\u2013" if v is None else f"{v * 100:.2g} %"
    return TemplateConfig(instance=JinjaTemplateEngine.from_environment(env))


def is_poll(request: Req) -> bool:
    return request.headers.get(POLL_HEADER) is not None


def page(request: Req, name: str, status: int = 200, **context: Any) -> Template:
    """A whole page, or with `fragment` set the part of it that console.js refreshes."""
    session: Session | None = request.state.get("ui_session")
    principal = request.state.get("principal")
    return Template(
        name,
        context={
            "principal": principal,
            "can_write": principal is not None and principal.role.allows(Role.DEPLOYER),
            "csrf": session.csrf if session else "",
            "flash": request.state.get("flash"),
            "errors": {},
            "path": request.url.path,
            **context,
        },
        status_code=status,
        headers=SECURITY_HEADERS,
    )


async def flash(request: Req, message: str) -> None:
    session: Session | None = request.state.get("ui_session")
    if session is not None:
        await sessions_of(request).flash(session, message)


def error_page(request: Req, status: int, title: str, message: str) -> Response[Any]:
    if is_poll(request):
        return Response(message, status_code=status, media_type="text/plain")
    return page(request, "error.html", status, title=title, message=message)


def login_required(request: Req, exc: LoginRequired) -> Response[Any]:
    if is_poll(request):  # console.js goes to the login page itself
        return Response("log in again", status_code=401, media_type="text/plain")
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if request.method != "GET":
        target = UI_PATH
    return Redirect(f"{UI_PATH}/login?next={quote(target, safe='')}", status_code=303)


def registry_error(request: Req, exc: RegistryError) -> Response[Any]:
    titles = {401: "Log in", 403: "Not allowed", 404: "Not found", 409: "Conflict"}
    status = status_of(exc)
    return error_page(request, status, titles.get(status, "Cannot do that"), exc.message)


def http_error(request: Req, exc: HTTPException) -> Response[Any]:
    if isinstance(exc, ValidationException):
        return error_page(request, 400, "Bad request", f"malformed request: {exc.detail}")
    return error_page(request, exc.status_code, "Cannot do that", str(exc.detail))


def unexpected_error(request: Req, exc: Exception) -> Response[Any]:
    rid = request.state.get("request_id", "")
    log.exception("console: unhandled error on %s %s", request.method, request.url.path)
    return error_page(
        request,
        500,
        "Something went wrong",
        f"The console could not do that. The server log has the details (request id {rid}).",
    )


EXCEPTION_HANDLERS: Final[ExceptionHandlersMap] = {
    LoginRequired: login_required,
    RegistryError: registry_error,
    HTTPException: http_error,
    Exception: unexpected_error,
}
