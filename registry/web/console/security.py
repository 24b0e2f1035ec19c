"""Who is at the console: the session cookie, the role rules of the API, CSRF and origin
checks on every form post.

- Logging in posts the token once; the server checks it with the TokenAuthority and answers
  with an HttpOnly, SameSite=Strict cookie holding only an opaque session id (sessions.py).
  The console's cookies are `Secure` when the browser used TLS: to this server, or to a proxy
  in front that is trusted (`MODELYARD_FORWARDED_ALLOW_IPS`) and says so (`X-Forwarded-Proto`).
- Every request looks the principal up again from the session's token hash and applies the
  API's role rule: reader for reads, deployer for writes unless a route asks for more.
- Every POST must carry the session's CSRF token (form field or header) and, when the browser
  sends an Origin, come from this host."""

from __future__ import annotations

from typing import Any, Final
from urllib.parse import urlsplit

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from registry.auth import require_role
from registry.catalog.domain import Principal, Role
from registry.errors import PermissionDenied, Unauthenticated
from registry.web.api.context import READ_METHODS
from registry.web.console.sessions import Session, Sessions
from registry.web.state import web_of

COOKIE: Final = "modelyard_console"
CSRF_FIELD: Final = "csrf_token"
CSRF_HEADER: Final = "x-csrf-token"
POLL_HEADER: Final = "x-console-poll"  # set by console.js on its refreshes
UI_PATH: Final = "/ui"

Conn = ASGIConnection[Any, Any, Any, Any]


class LoginRequired(Exception):
    """No session, an expired one, or its token was revoked: log in (again)."""


def sessions_of(connection: Conn) -> Sessions:
    return web_of(connection).sessions


def session_of(connection: Conn) -> Session:
    session: Session = connection.state.ui_session
    return session


def principal_of(connection: Conn) -> Principal:
    principal: Principal = connection.state.principal
    return principal


async def ui_guard(connection: Conn, handler: BaseRouteHandler) -> None:
    if handler.opt.get("public"):
        return
    sessions = sessions_of(connection)
    session = await sessions.get(connection.cookies.get(COOKIE))
    if session is None:
        raise LoginRequired
    try:
        principal = await web_of(connection).authority.principal_of_hash(session.token_hash)
    except Unauthenticated:
        await sessions.drop(session.id)
        raise LoginRequired from None
    connection.state.principal = principal
    connection.state.ui_session = session
    method = connection.scope.get("method")
    if method == "GET" and POLL_HEADER not in connection.headers:  # a page shows the flash
        connection.state.flash = await sessions.take_flash(session)
    if method not in READ_METHODS:
        check_origin(connection)
        await check_csrf(connection, session)
    needed = handler.opt.get("role")
    if needed is None:
        needed = Role.READER if method in READ_METHODS else Role.DEPLOYER
    require_role(principal, needed)


def over_tls(connection: Conn) -> bool:
    """Did the browser use TLS (directly, or as a trusted proxy says)? Its cookies: `Secure`."""
    client = connection.client
    return web_of(connection).proxies.over_tls(
        connection.url.scheme,
        client.host if client is not None else None,
        connection.headers.getall("x-forwarded-proto", []),
    )


def check_origin(connection: Conn) -> None:
    """A browser names the page a POST came from; it must be this host (the form's own)."""
    origin = connection.headers.get("origin")
    if origin is None:
        return
    host = connection.headers.get("host", "")
    if urlsplit(origin).netloc != host:
        raise PermissionDenied(f"a console form must be sent from this site, not from {origin}")


async def check_csrf(connection: Conn, session: Session) -> None:
    offered = connection.headers.get(CSRF_HEADER)
    if offered is None:
        form = await Request[Any, Any, Any](connection.scope, connection.receive).form()
        value = form.get(CSRF_FIELD)
        offered = value if isinstance(value, str) else None
    if not session.csrf_ok(offered):
        raise PermissionDenied(
            "this form is out of date or was not sent by the console: reload the page and retry"
        )


def safe_next(target: str | None) -> str:
    """Where to go after logging in: only a console path of this site (no open redirect)."""
    if target and target.startswith(UI_PATH) and not target.startswith("//"):
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc and "\\" not in target:
            return target
    return UI_PATH
