"""REST: API tokens (admin only). A token's secret is returned once, at creation."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, Response, delete, get, post
from litestar.params import JSONBody, PathParameter

from registry.catalog.commands import TokenCreate
from registry.catalog.domain import Principal, Role, Token
from registry.web.api.context import (
    MAX_BIGINT,
    AuthorityDep,
    Req,
    principal_of,
)
from registry.web.api.schemas import IssuedTokenBody, TokenList


class TokenController(Controller):
    path = "/tokens"
    tags = ["tokens"]
    opt = {"role": Role.ADMIN}

    @get("/")
    async def list_tokens(self, authority: AuthorityDep) -> TokenList:
        return TokenList(await authority.list())

    @post("/")
    async def create_token(
        self, authority: AuthorityDep, request: Req, data: JSONBody[TokenCreate]
    ) -> Response[IssuedTokenBody]:
        issued = await authority.issue(data.name, data.role, principal_of(request).name)
        body = IssuedTokenBody(
            issued.token, issued.info.id, issued.info.name, issued.info.role.value
        )
        return Response(body, status_code=201, headers={"Cache-Control": "no-store"})

    @delete("/{token_id:int}", status_code=200)
    async def revoke_token(
        self,
        authority: AuthorityDep,
        request: Req,
        token_id: Annotated[int, PathParameter(ge=1, le=MAX_BIGINT)],
    ) -> Token:
        return await authority.revoke(token_id, principal_of(request).name)


class WhoAmIController(Controller):
    path = "/whoami"
    tags = ["tokens"]
    opt = {"role": Role.READER}

    @get("/")
    async def whoami(self, request: Req) -> Principal:
        return principal_of(request)
