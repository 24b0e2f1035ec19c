"""REST: API tokens (admin only). A token's secret is returned once, at creation."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, delete, get, post

from registry.api.context import principal_of
from registry.api.schemas import IssuedTokenBody, TokenList
from registry.auth import TokenAuthority
from registry.commands import TokenCreate
from registry.domain import Principal, Role, Token


class TokenController(Controller):
    path = "/tokens"
    tags = ["tokens"]
    opt = {"role": Role.ADMIN}

    @get("/")
    async def list_tokens(self, authority: TokenAuthority) -> TokenList:
        return TokenList(await authority.list())

    @post("/")
    async def create_token(self, authority: TokenAuthority, request: Request[Any, Any, Any], data: TokenCreate) -> Response[IssuedTokenBody]:
        issued = await authority.issue(data.name, data.role, principal_of(request).name)
        body = IssuedTokenBody(issued.token, issued.info.id, issued.info.name, issued.info.role.value)
        return Response(body, status_code=201, headers={"Cache-Control": "no-store"})

    @delete("/{token_id:int}", status_code=200)
    async def revoke_token(self, authority: TokenAuthority, request: Request[Any, Any, Any], token_id: int) -> Token:
        return await authority.revoke(token_id, principal_of(request).name)


class WhoAmIController(Controller):
    path = "/whoami"
    tags = ["tokens"]
    opt = {"role": Role.READER}

    @get("/")
    async def whoami(self, request: Request[Any, Any, Any]) -> Principal:
        return principal_of(request)
