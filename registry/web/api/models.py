"""REST: registered models."""

from __future__ import annotations

from urllib.parse import quote

from litestar import Controller, Response, delete, get, patch, post, put
from litestar.params import FromQuery, JSONBody

from registry.catalog.changes import ModelFilter
from registry.catalog.commands import ModelCreate, ModelUpdate, TagChange
from registry.catalog.domain import Model, Role, Stage, model_etag
from registry.web.api.context import (
    Cursor,
    Limit,
    OptionalQuery,
    PathStr,
    RegistryDep,
    Req,
    TagFilter,
    caller_of,
    if_match,
    parse_tag_filter,
)
from registry.web.api.pagination import decode_cursor, encode_cursor
from registry.web.api.schemas import ModelPage


def model_response(model: Model, status: int = 200) -> Response[Model]:
    headers = {"ETag": model_etag(model)}
    if status == 201:
        headers["Location"] = f"/api/v1/models/{quote(model.name, safe='')}"
    return Response(model, status_code=status, headers=headers)


class ModelController(Controller):
    path = "/models"
    tags = ["models"]

    @get("/")
    async def list_models(
        self,
        registry: RegistryDep,
        prefix: OptionalQuery = None,
        tag: TagFilter = None,
        stage: FromQuery[Stage | None] = None,
        alias: OptionalQuery = None,
        limit: Limit = 100,
        cursor: Cursor = None,
    ) -> ModelPage:
        after = decode_cursor("models", cursor)
        where = ModelFilter(prefix=prefix, tag=parse_tag_filter(tag), stage=stage, alias=alias)
        items = await registry.list_models(
            where, str(after) if after is not None else None, limit + 1
        )
        more = len(items) > limit
        items = items[:limit]
        return ModelPage(items, encode_cursor("models", items[-1].name) if more else None)

    @post("/")
    async def create_model(
        self, registry: RegistryDep, request: Req, data: JSONBody[ModelCreate]
    ) -> Response[Model]:
        return model_response(await registry.create_model(await caller_of(request), data), 201)

    @get("/{name:str}")
    async def get_model(self, registry: RegistryDep, name: PathStr) -> Response[Model]:
        return model_response(await registry.get_model(name))

    @patch("/{name:str}")
    async def update_model(
        self,
        registry: RegistryDep,
        request: Req,
        name: PathStr,
        data: JSONBody[ModelUpdate],
    ) -> Response[Model]:
        caller = await caller_of(request)
        return model_response(
            await registry.update_model(caller, name, data.description, if_match(request))
        )

    @delete("/{name:str}", opt={"role": Role.ADMIN}, status_code=204)
    async def delete_model(self, registry: RegistryDep, request: Req, name: PathStr) -> None:
        await registry.delete_model(await caller_of(request), name, if_match(request))

    @put("/{name:str}/tags/{key:str}")
    async def set_tag(
        self,
        registry: RegistryDep,
        request: Req,
        name: PathStr,
        key: PathStr,
        data: JSONBody[TagChange],
    ) -> Response[Model]:
        caller = await caller_of(request)
        return model_response(
            await registry.set_model_tag(caller, name, key, data.value, if_match(request))
        )

    @delete("/{name:str}/tags/{key:str}", status_code=200)
    async def delete_tag(
        self, registry: RegistryDep, request: Req, name: PathStr, key: PathStr
    ) -> Response[Model]:
        caller = await caller_of(request)
        return model_response(
            await registry.set_model_tag(caller, name, key, None, if_match(request))
        )
