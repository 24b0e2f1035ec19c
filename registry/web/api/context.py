"""Per-request plumbing: the role guard, request ids, the caller of a write, tag filters."""

from __future__ import annotations

import hashlib
import uuid
from typing import Annotated, Any, Final

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.di import NamedDependency
from litestar.enums import ScopeType
from litestar.handlers.base import BaseRouteHandler
from litestar.params import FromQuery, PathParameter, QueryParameter
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from registry.auth import TokenAuthority, require_role
from registry.catalog.changes import Caller
from registry.catalog.domain import Principal, Role
from registry.catalog.service import Registry
from registry.errors import InvalidInput
from registry.web.state import web_of

RegistryDep = NamedDependency[Registry]
AuthorityDep = NamedDependency[TokenAuthority]
Req = Request[Any, Any, Any]
PathStr = Annotated[str, PathParameter()]
MAX_BIGINT = 2**63 - 1  # a BIGINT column: larger numbers are refused, not overflowed
MAX_VERSION = MAX_BIGINT
VersionNo = Annotated[int, PathParameter(ge=1, le=MAX_VERSION, description="version number")]
Limit = Annotated[int, QueryParameter(ge=1, le=1000, description="page size")]
Cursor = Annotated[str | None, QueryParameter(description="next_cursor of the previous page")]
TagFilter = Annotated[str | None, QueryParameter(description="key=value")]
OptionalQuery = FromQuery[str | None]

REQUEST_ID_HEADER: Final = "x-request-id"
REASON_HEADER: Final = "x-change-reason"
READ_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
MAX_KEY: Final = 200


def request_id_middleware(app: ASGIApp) -> ASGIApp:
    """Take the caller's X-Request-Id (or make one), keep it in scope state, echo it back."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        rid = ""
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                rid = value.decode("latin-1")[:MAX_KEY]
                break
        rid = rid or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            await send(message)

        await app(scope, receive, send_with_id)

    return middleware


async def role_guard(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    """Every /api route: a valid token, and a role of at least the route's `opt["role"]`
    (reader for reads, deployer for writes unless the route says more)."""
    principal = await web_of(connection).authority.authenticate(
        connection.headers.get("authorization")
    )
    needed = handler.opt.get("role")
    if needed is None:
        needed = Role.READER if connection.scope.get("method") in READ_METHODS else Role.DEPLOYER
    require_role(principal, needed)
    connection.state.principal = principal


def principal_of(request: Request[Any, Any, Any]) -> Principal:
    principal: Principal = request.state.principal
    return principal


async def caller_of(
    request: Request[Any, Any, Any], reason: str | None = None, *, with_body: bool = True
) -> Caller:
    """The caller of a write. With an Idempotency-Key, the fingerprint covers method, path and
    (unless `with_body` is off, for streamed uploads that hash their own body) the body."""
    key = request.headers.get("idempotency-key")
    fingerprint = None
    if key is not None:
        if not 0 < len(key) <= MAX_KEY:
            raise InvalidInput(
                f"Idempotency-Key must be 1-{MAX_KEY} characters", field="Idempotency-Key"
            )
        digest = hashlib.sha256(f"{request.method} {request.url.path}\n".encode())
        if with_body:
            digest.update(await request.body())
        fingerprint = digest.hexdigest()
    header_reason = request.headers.get(REASON_HEADER)
    return Caller(
        principal=principal_of(request),
        request_id=request.state.get("request_id"),
        reason=reason or (header_reason[:1000] if header_reason else None),
        idempotency_key=key,
        fingerprint=fingerprint,
    )


def if_match(request: Request[Any, Any, Any]) -> str | None:
    return request.headers.get("if-match")


def parse_tag_filter(tag: str | None) -> tuple[str, str] | None:
    if tag is None:
        return None
    key, sep, value = tag.partition("=")
    if not sep or not key:
        raise InvalidInput("`tag` filter must be `key=value`", field="tag")
    return key, value
