"""REST: aliases (set, move, delete, resolve, and what an alias pointed to at a time)."""

from __future__ import annotations

from datetime import datetime

from litestar import Controller, Response, delete, get, put
from litestar.params import FromQuery, JSONBody

from registry.catalog.commands import AliasChange
from registry.catalog.domain import ModelVersion
from registry.catalog.service import AliasAt
from registry.web.api.context import (
    PathStr,
    RegistryDep,
    Req,
    caller_of,
    if_match,
)
from registry.web.api.versions import version_response


class AliasController(Controller):
    path = "/models/{name:str}/aliases"
    tags = ["aliases"]

    @get("/")
    async def list_aliases(self, registry: RegistryDep, name: PathStr) -> dict[str, int]:
        return (await registry.get_model(name)).aliases

    @get("/{alias:str}")
    async def resolve(
        self, registry: RegistryDep, name: PathStr, alias: PathStr
    ) -> Response[ModelVersion]:
        """The version the alias points to now."""
        return version_response(await registry.resolve_alias(name, alias))

    @get("/{alias:str}/history")
    async def at_time(
        self, registry: RegistryDep, name: PathStr, alias: PathStr, at: FromQuery[datetime]
    ) -> AliasAt:
        """The version the alias pointed to at time `at` (RFC 3339), from the audit log."""
        return await registry.alias_at(name, alias, at)

    @put("/{alias:str}")
    async def set_alias(
        self,
        registry: RegistryDep,
        request: Req,
        name: PathStr,
        alias: PathStr,
        data: JSONBody[AliasChange],
    ) -> Response[ModelVersion]:
        caller = await caller_of(request, data.reason)
        return version_response(
            await registry.set_alias(caller, name, alias, data, if_match(request))
        )

    @delete("/{alias:str}", status_code=204)
    async def delete_alias(
        self, registry: RegistryDep, request: Req, name: PathStr, alias: PathStr
    ) -> None:
        await registry.delete_alias(await caller_of(request), name, alias, if_match(request))
