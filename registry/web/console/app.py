"""The console's routes: pages and actions behind the session guard, the login and logout
forms, and the static files (CSS, JavaScript) shipped in the package."""

from __future__ import annotations

import hmac
import secrets
from typing import Final

from litestar import Router, get, post
from litestar.datastructures import Cookie
from litestar.response import Redirect, Template
from litestar.static_files import create_static_files_router
from litestar.types import ControllerRouterHandler

from registry.auth import hash_token
from registry.errors import Unauthenticated
from registry.web.api.body import refuse_nul_in_url
from registry.web.console.actions import ConsoleActions
from registry.web.console.pages import ConsolePages
from registry.web.console.render import EXCEPTION_HANDLERS, STATIC, Req, page
from registry.web.console.security import (
    COOKIE,
    CSRF_FIELD,
    UI_PATH,
    check_origin,
    over_tls,
    safe_next,
    session_of,
    sessions_of,
    ui_guard,
)
from registry.web.state import web_of

LoginAnswer = Redirect | Template


def _cookie(request: Req, value: str, max_age: int | None = None) -> Cookie:
    return Cookie(
        key=COOKIE,
        value=value,
        path=UI_PATH,
        httponly=True,
        samesite="strict",
        secure=over_tls(request),
        max_age=max_age,
    )


LOGIN_COOKIE: Final = "modelyard_login"  # the login form's CSRF token (double submit)


def _login_cookie(request: Req, value: str, max_age: int | None = None) -> Cookie:
    return Cookie(
        key=LOGIN_COOKIE,
        value=value,
        path=f"{UI_PATH}/login",
        httponly=True,
        samesite="strict",
        secure=over_tls(request),
        max_age=max_age,
    )


def _login_page(request: Req, status: int = 200, **context: object) -> Template:
    """The login form with a fresh CSRF token, in the form and in a cookie of its own: a login
    POST must carry both, so another site cannot log a browser in with its own token."""
    csrf = secrets.token_urlsafe(32)
    answer = page(request, "login.html", status, csrf=csrf, **context)
    answer.set_cookie(_login_cookie(request, csrf))
    return answer


def _same(offered: str, expected: str) -> bool:
    return hmac.compare_digest(offered.encode(), expected.encode())


@get("/login", opt={"public": True})
async def login_form(request: Req) -> Template:
    return _login_page(request, next=safe_next(request.query_params.get("next")))


@post("/login", opt={"public": True})
async def login(request: Req) -> LoginAnswer:
    """The token is posted once; the browser gets only an opaque session id."""
    check_origin(request)
    form = await request.form()
    token = form.get("token")
    target = safe_next(form.get("next") if isinstance(form.get("next"), str) else None)
    expected, offered = request.cookies.get(LOGIN_COOKIE), form.get(CSRF_FIELD)
    if not (expected and isinstance(offered, str) and _same(offered, expected)):
        stale = {"token": "this login form is out of date: enter the token again"}
        return _login_page(request, 403, next=target, errors=stale)
    authority = web_of(request).authority
    secret = token.strip() if isinstance(token, str) else ""
    try:
        if not secret:
            raise Unauthenticated("enter an API token")
        await authority.authenticate(f"Bearer {secret}")
    except Unauthenticated as exc:
        errors = {"token": exc.message}
        return page(request, "login.html", 401, next=target, csrf=expected, errors=errors)
    sessions = sessions_of(request)
    await sessions.drop(request.cookies.get(COOKIE))
    session = await sessions.create(hash_token(secret))
    cookies = [_cookie(request, session.id), _login_cookie(request, "", 0)]
    return Redirect(target, status_code=303, cookies=cookies)


@post("/logout")
async def logout(request: Req) -> Redirect:
    await sessions_of(request).drop(session_of(request).id)
    return Redirect(f"{UI_PATH}/login", status_code=303, cookies=[_cookie(request, "", 0)])


def console_routes() -> list[ControllerRouterHandler]:
    console = Router(
        path=UI_PATH,
        route_handlers=[ConsolePages, ConsoleActions, login_form, login, logout],
        guards=[ui_guard],
        before_request=refuse_nul_in_url,
        exception_handlers=EXCEPTION_HANDLERS,
        include_in_schema=False,
    )
    static = create_static_files_router(
        path=f"{UI_PATH}/static", directories=[STATIC], name="console-static"
    )
    return [console, static]
