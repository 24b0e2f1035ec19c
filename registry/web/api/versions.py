"""REST: model versions, their stages and tags."""

from __future__ import annotations

from urllib.parse import quote

from litestar import Controller, Response, delete, get, patch, post, put
from litestar.params import FromQuery, JSONBody

from registry.catalog.changes import VersionFilter
from registry.catalog.commands import StageChange, TagChange, VersionCreate, VersionUpdate
from registry.catalog.domain import ModelVersion, Role, Stage, version_etag
from registry.web.api.context import (
    Cursor,
    Limit,
    OptionalQuery,
    PathStr,
    RegistryDep,
    Req,
    TagFilter,
    VersionNo,
    caller_of,
    if_match,
    parse_tag_filter,
)
from registry.web.api.pagination import decode_int_cursor, encode_cursor
from registry.web.api.schemas import VersionPage


def version_response(version: ModelVersion, status: int = 200) -> Response[ModelVersion]:
    headers = {"ETag": version_etag(version)}
    if status == 201:
        headers["Location"] = (
            f"/api/v1/models/{quote(version.model, safe='')}/versions/{version.version}"
        )
    return Response(version, status_code=status, headers=headers)


class VersionController(Controller):
    path = "/models/{name:str}/versions"
    tags = ["versions"]

    @get("/")
    async def list_versions(
        self,
        registry: RegistryDep,
        name: PathStr,
        stage: FromQuery[Stage | None] = None,
        tag: TagFilter = None,
        alias: OptionalQuery = None,
        limit: Limit = 100,
        cursor: Cursor = None,
    ) -> VersionPage:
        before = decode_int_cursor("versions", cursor)
        where = VersionFilter(stage=stage, tag=parse_tag_filter(tag), alias=alias)
        items = await registry.list_versions(name, where, before, limit + 1)
        more = len(items) > limit
        items = items[:limit]
        return VersionPage(items, encode_cursor("versions", items[-1].version) if more else None)

    @post("/")
    async def create_version(
        self,
        registry: RegistryDep,
        request: Req,
        name: PathStr,
        data: JSONBody[VersionCreate],
    ) -> Response[ModelVersion]:
        return version_response(
            await registry.create_version(await caller_of(request), name, data), 201
        )

    @get("/{version:int}")
    async def get_version(
        self, registry: RegistryDep, name: PathStr, version: VersionNo
    ) -> Response[ModelVersion]:
        return version_response(await registry.get_version(name, version))

    @patch("/{version:int}")
    async def update_version(
        self,
        registry: RegistryDep,
        request: Req,
        name: PathStr,
        version: VersionNo,
        data: JSONBody[VersionUpdate],
    ) -> Response[ModelVersion]:
        caller = await caller_of(request)
        return version_response(
            await registry.update_version(
                caller, name, version, data.description, if_match(request), data.endpoint
            )
        )

    @delete("/{version:int}", opt={"role": Role.ADMIN}, status_code=204)
    async def delete_version(
        self, registry: RegistryDep, request: Req, name: PathStr, version: VersionNo
    ) -> None:
        await registry.delete_version(await caller_of(request), name, version, if_match(request))

    @post("/{version:int}/stage", status_code=200)
    async def transition(
        self,
        registry: RegistryDep,
        request: Req,
        name: PathStr,
        version: VersionNo,
        data: JSONBody[StageChange],
    ) -> Response[ModelVersion]:
        caller = await caller_of(request, data.reason)
        return version_response(
            await registry.transition_stage(caller, name, version, data, if_match(request))
        )

    @put("/{version:int}/tags/{key:str}")
    async def set_tag(
        self,
        registry: RegistryDep,
        request: Req,
        name: PathStr,
        version: VersionNo,
        key: PathStr,
        data: JSONBody[TagChange],
    ) -> Response[ModelVersion]:
        caller = await caller_of(request)
        return version_response(
            await registry.set_version_tag(
                caller, name, version, key, data.value, if_match(request)
            )
        )

    @delete("/{version:int}/tags/{key:str}", status_code=200)
    async def delete_tag(
        self,
        registry: RegistryDep,
        request: Req,
        name: PathStr,
        version: VersionNo,
        key: PathStr,
    ) -> Response[ModelVersion]:
        caller = await caller_of(request)
        return version_response(
            await registry.set_version_tag(caller, name, version, key, None, if_match(request))
        )
