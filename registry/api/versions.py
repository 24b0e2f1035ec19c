"""REST: model versions, their stages and tags."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, delete, get, patch, post, put
from litestar.params import Parameter

from registry.api.context import caller_of, if_match, parse_tag_filter
from registry.api.pagination import decode_cursor, encode_cursor
from registry.api.schemas import VersionPage
from registry.changes import VersionFilter
from registry.commands import StageChange, TagChange, VersionCreate, VersionUpdate
from registry.domain import ModelVersion, Role, Stage, version_etag
from registry.service import Registry

Limit = Annotated[int, Parameter(ge=1, le=1000)]
Number = Annotated[int, Parameter(ge=1, description="version number")]


def version_response(version: ModelVersion, status: int = 200) -> Response[ModelVersion]:
    headers = {"ETag": version_etag(version)}
    if status == 201:
        headers["Location"] = f"/api/v1/models/{version.model}/versions/{version.version}"
    return Response(version, status_code=status, headers=headers)


class VersionController(Controller):
    path = "/models/{name:str}/versions"
    tags = ["versions"]

    @get("/")
    async def list_versions(
        self,
        registry: Registry,
        name: str,
        stage: Stage | None = None,
        tag: Annotated[str | None, Parameter(description="key=value")] = None,
        alias: str | None = None,
        limit: Limit = 100,
        cursor: str | None = None,
    ) -> VersionPage:
        before = decode_cursor("versions", cursor)
        where = VersionFilter(stage=stage, tag=parse_tag_filter(tag), alias=alias)
        items = await registry.list_versions(
            name, where, int(before) if before is not None else None, limit + 1
        )
        more = len(items) > limit
        items = items[:limit]
        return VersionPage(items, encode_cursor("versions", items[-1].version) if more else None)

    @post("/")
    async def create_version(self, registry: Registry, request: Request[Any, Any, Any], name: str, data: VersionCreate) -> Response[ModelVersion]:
        return version_response(await registry.create_version(await caller_of(request), name, data), 201)

    @get("/{version:int}")
    async def get_version(self, registry: Registry, name: str, version: Number) -> Response[ModelVersion]:
        return version_response(await registry.get_version(name, version))

    @patch("/{version:int}")
    async def update_version(self, registry: Registry, request: Request[Any, Any, Any], name: str, version: Number, data: VersionUpdate) -> Response[ModelVersion]:
        caller = await caller_of(request)
        return version_response(await registry.update_version(caller, name, version, data.description, if_match(request)))

    @delete("/{version:int}", opt={"role": Role.ADMIN}, status_code=204)
    async def delete_version(self, registry: Registry, request: Request[Any, Any, Any], name: str, version: Number) -> None:
        await registry.delete_version(await caller_of(request), name, version, if_match(request))

    @post("/{version:int}/stage", status_code=200)
    async def transition(self, registry: Registry, request: Request[Any, Any, Any], name: str, version: Number, data: StageChange) -> Response[ModelVersion]:
        caller = await caller_of(request, data.reason)
        return version_response(await registry.transition_stage(caller, name, version, data, if_match(request)))

    @put("/{version:int}/tags/{key:str}")
    async def set_tag(self, registry: Registry, request: Request[Any, Any, Any], name: str, version: Number, key: str, data: TagChange) -> Response[ModelVersion]:
        caller = await caller_of(request)
        return version_response(await registry.set_version_tag(caller, name, version, key, data.value, if_match(request)))

    @delete("/{version:int}/tags/{key:str}", status_code=200)
    async def delete_tag(self, registry: Registry, request: Request[Any, Any, Any], name: str, version: Number, key: str) -> Response[ModelVersion]:
        caller = await caller_of(request)
        return version_response(await registry.set_version_tag(caller, name, version, key, None, if_match(request)))
