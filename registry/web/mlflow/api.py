"""REST: the MLflow-compatible model registry under /api/2.0/mlflow, on the same use cases as
/api/v1 (so audit, roles, webhooks and errors are shared), with MLflow's errors:
`{"error_code", "message"}` and MLflow's HTTP statuses (registry/web/errors.py maps them)."""

from __future__ import annotations

import base64
import binascii
from typing import Any, Final, TypeVar

import msgspec
from litestar import (
    Controller,
    HttpMethod,
    Response,
    Router,
    delete,
    get,
    patch,
    post,
    route,
)
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.params import FromPath, FromQuery, JSONBody

from registry import errors
from registry.auth import require_role
from registry.catalog.commands import AliasChange, ModelCreate, SourceVersionCreate, StageChange
from registry.catalog.domain import Role
from registry.catalog.service import Registry
from registry.web.api.body import DepthCheckedRequest, refuse_nul_in_url
from registry.web.api.context import READ_METHODS, RegistryDep, Req, caller_of
from registry.web.errors import MLFLOW_HANDLERS
from registry.web.mlflow import messages as m
from registry.web.mlflow.compat import (
    alias_or_invalid,
    check_source,
    named_for_mlflow,
    unless_missing,
)
from registry.web.mlflow.queries import latest_versions, search_models, search_versions
from registry.web.mlflow.search_filter import Target, parse_filter, parse_order_by
from registry.web.mlflow.webhooks import WebhookController
from registry.web.state import provide, web_of

PREFIX: Final = "/api/2.0/mlflow"
#: Where MLflow clients call endpoints; those not served answer `unserved`.
MLFLOW_PREFIXES: Final = (PREFIX, "/api/3.0/mlflow", "/api/2.0/mlflow-artifacts")
T = TypeVar("T")


def as_bearer(authorization: str | None) -> str | None:
    """MLflow clients send `Bearer <MLFLOW_TRACKING_TOKEN>`, or Basic auth from
    MLFLOW_TRACKING_USERNAME/PASSWORD: the password is then the modelyard token (the user name
    is free text), or the user name when the password is empty."""
    if not authorization or authorization[:6].lower() != "basic ":
        return authorization
    try:
        user, _, password = base64.b64decode(authorization[6:].strip()).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise errors.Unauthenticated("malformed Basic credentials") from None
    secret = password or user
    return f"Bearer {secret}" if secret else None


async def mlflow_guard(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    """As /api/v1's role guard (reader for reads, deployer for writes, or the route's
    `opt["role"]`), accepting Basic auth too."""
    authority = web_of(connection).authority
    principal = await authority.authenticate(as_bearer(connection.headers.get("authorization")))
    needed = handler.opt.get("role")
    if needed is None:
        needed = Role.READER if connection.scope.get("method") in READ_METHODS else Role.DEPLOYER
    require_role(principal, needed)
    connection.state.principal = principal


def command(kind: type[T], **fields: Any) -> T:
    """Build a modelyard command with its own field rules checked (lengths, patterns)."""
    try:
        return msgspec.convert(fields, kind)
    except msgspec.ValidationError as exc:
        raise errors.InvalidInput(str(exc)) from None


def _version_no(text: str) -> int:
    return m.version_number(text)


class RegisteredModels(Controller):
    path = "/registered-models"
    tags = ["mlflow"]

    @post("/create", status_code=200)
    async def create(
        self, registry: RegistryDep, request: Req, data: JSONBody[m.CreateModelRequest]
    ) -> m.ModelBody:
        cmd = command(
            ModelCreate, name=data.name, description=data.description, tags=m.tag_map(data.tags)
        )
        model = await registry.create_model(await caller_of(request), cmd)
        return m.ModelBody(m.to_model(model))

    @get("/get")
    async def get_model(self, registry: RegistryDep, name: FromQuery[str]) -> m.ModelBody:
        model = await registry.get_model(name)
        return m.ModelBody(m.to_model(model, await latest_versions(registry, name)))

    @post("/rename", status_code=200, opt={"role": Role.ADMIN})
    async def rename(
        self, registry: RegistryDep, request: Req, data: JSONBody[m.RenameModelRequest]
    ) -> m.ModelBody:
        model = await registry.rename_model(await caller_of(request), data.name, data.new_name)
        return m.ModelBody(m.to_model(model, await latest_versions(registry, model.name)))

    @patch("/update")
    async def update(
        self, registry: RegistryDep, request: Req, data: JSONBody[m.UpdateModelRequest]
    ) -> m.ModelBody:
        caller = await caller_of(request)
        model = await registry.update_model(caller, data.name, data.description, None)
        return m.ModelBody(m.to_model(model))

    @delete("/delete", status_code=200, opt={"role": Role.ADMIN})
    async def delete_model(
        self, registry: RegistryDep, request: Req, data: JSONBody[m.NameRequest]
    ) -> m.Empty:
        await registry.delete_model(await caller_of(request), data.name, None)
        return m.Empty()

    @get("/search")
    async def search(
        self,
        registry: RegistryDep,
        filter: FromQuery[str | None] = None,
        max_results: FromQuery[int | None] = None,
        order_by: FromQuery[list[str] | None] = None,
        page_token: FromQuery[str | None] = None,
    ) -> m.ModelSearchBody:
        where = parse_filter(filter, Target.MODELS)
        order = parse_order_by(order_by, Target.MODELS)
        limit = m.max_results(max_results, m.DEFAULT_MODEL_RESULTS, m.MAX_MODEL_RESULTS)
        found, token = await search_models(registry, where, order, page_token, limit)
        return m.ModelSearchBody(found, token)

    @post("/get-latest-versions", status_code=200, opt={"role": Role.READER})
    async def latest_post(
        self, registry: RegistryDep, data: JSONBody[m.LatestVersionsRequest]
    ) -> m.VersionsBody:
        return await self._latest(registry, data.name, data.stages)

    @get("/get-latest-versions")
    async def latest_get(
        self,
        registry: RegistryDep,
        name: FromQuery[str],
        stages: FromQuery[list[str] | None] = None,
    ) -> m.VersionsBody:
        return await self._latest(registry, name, stages or [])

    async def _latest(self, registry: Registry, name: str, stages: list[str]) -> m.VersionsBody:
        await registry.get_model(name)
        found = await latest_versions(registry, name, [m.stage_of(s) for s in stages])
        return m.VersionsBody([m.to_version(v) for v in found])

    @post("/set-tag", status_code=200)
    async def set_tag(
        self, registry: RegistryDep, request: Req, data: JSONBody[m.ModelTagRequest]
    ) -> m.Empty:
        await registry.set_model_tag(
            await caller_of(request), data.name, data.key, data.value, None
        )
        return m.Empty()

    @delete("/delete-tag", status_code=200)
    async def delete_tag(
        self, registry: RegistryDep, request: Req, data: JSONBody[m.ModelTagDeleteRequest]
    ) -> m.Empty:
        caller = await caller_of(request)
        await unless_missing(registry.set_model_tag(caller, data.name, data.key, None, None), "key")
        return m.Empty()

    @post("/alias", status_code=200)
    async def set_alias(
        self, registry: RegistryDep, request: Req, data: JSONBody[m.AliasRequest]
    ) -> m.Empty:
        change = AliasChange(version=_version_no(data.version))
        await registry.set_alias(await caller_of(request), data.name, data.alias, change, None)
        return m.Empty()

    @delete("/alias", status_code=200)
    async def delete_alias(
        self, registry: RegistryDep, request: Req, data: JSONBody[m.AliasNameRequest]
    ) -> m.Empty:
        caller = await caller_of(request)
        await unless_missing(registry.delete_alias(caller, data.name, data.alias, None), "alias")
        return m.Empty()

    @get("/alias")
    async def by_alias(
        self, registry: RegistryDep, name: FromQuery[str], alias: FromQuery[str]
    ) -> m.VersionBody:
        found = await alias_or_invalid(registry.resolve_alias(name, alias), alias)
        return m.VersionBody(m.to_version(found))


class ModelVersions(Controller):
    path = "/model-versions"
    tags = ["mlflow"]

    @post("/create", status_code=200)
    async def create(
        self, registry: RegistryDep, request: Req, data: JSONBody[m.CreateVersionRequest]
    ) -> m.VersionBody:
        check_source(data.source, m.tag_map(data.tags))
        cmd = command(
            SourceVersionCreate,
            source=data.source,
            run_id=data.run_id or None,
            description=data.description,
            tags=m.tag_map(data.tags),
            logged_model_id=data.model_id or None,
            run_link=data.run_link or None,
        )
        version = await registry.register_source_version(await caller_of(request), data.name, cmd)
        return m.VersionBody(m.to_version(version))

    @get("/get")
    async def get_version(
        self, registry: RegistryDep, name: FromQuery[str], version: FromQuery[str]
    ) -> m.VersionBody:
        return m.VersionBody(m.to_version(await registry.get_version(name, _version_no(version))))

    @patch("/update")
    async def update(
        self, registry: RegistryDep, request: Req, data: JSONBody[m.UpdateVersionRequest]
    ) -> m.VersionBody:
        caller = await caller_of(request)
        found = await registry.update_version(
            caller, data.name, _version_no(data.version), data.description, None
        )
        return m.VersionBody(m.to_version(found))

    @delete("/delete", status_code=200, opt={"role": Role.ADMIN})
    async def delete_version(
        self, registry: RegistryDep, request: Req, data: JSONBody[m.VersionRequest]
    ) -> m.Empty:
        caller = await caller_of(request)
        number = _version_no(data.version)
        await registry.delete_version(caller, data.name, number, None, release_aliases=True)
        return m.Empty()

    @post("/transition-stage", status_code=200)
    async def transition(
        self, registry: RegistryDep, request: Req, data: JSONBody[m.TransitionRequest]
    ) -> m.VersionBody:
        change = StageChange(
            stage=m.stage_of(data.stage), archive_existing=data.archive_existing_versions
        )
        caller = await caller_of(request)
        number = _version_no(data.version)
        found = await named_for_mlflow(
            registry.transition_stage(caller, data.name, number, change, None)
        )
        return m.VersionBody(m.to_version(found))

    @get("/search")
    async def search(
        self,
        registry: RegistryDep,
        filter: FromQuery[str | None] = None,
        max_results: FromQuery[int | None] = None,
        order_by: FromQuery[list[str] | None] = None,
        page_token: FromQuery[str | None] = None,
    ) -> m.VersionSearchBody:
        where = parse_filter(filter, Target.VERSIONS)
        order = parse_order_by(order_by, Target.VERSIONS)
        limit = m.max_results(max_results, m.DEFAULT_VERSION_RESULTS, m.MAX_VERSION_RESULTS)
        found, token = await search_versions(registry, where, order, page_token, limit)
        return m.VersionSearchBody(found, token)

    @get("/get-download-uri")
    async def download_uri(
        self, registry: RegistryDep, name: FromQuery[str], version: FromQuery[str]
    ) -> m.DownloadUriBody:
        found = await registry.get_version(name, _version_no(version))
        return m.DownloadUriBody(m.download_uri(found))

    @post("/set-tag", status_code=200)
    async def set_tag(
        self, registry: RegistryDep, request: Req, data: JSONBody[m.VersionTagRequest]
    ) -> m.Empty:
        caller = await caller_of(request)
        number = _version_no(data.version)
        await registry.set_version_tag(caller, data.name, number, data.key, data.value, None)
        return m.Empty()

    @delete("/delete-tag", status_code=200)
    async def delete_tag(
        self, registry: RegistryDep, request: Req, data: JSONBody[m.VersionTagDeleteRequest]
    ) -> m.Empty:
        caller = await caller_of(request)
        number = _version_no(data.version)
        delete = registry.set_version_tag(caller, data.name, number, data.key, None, None)
        await unless_missing(delete, "key")
        return m.Empty()


@route(
    "/{rest:path}",
    http_method=[
        HttpMethod.GET,
        HttpMethod.POST,
        HttpMethod.PUT,
        HttpMethod.PATCH,
        HttpMethod.DELETE,
    ],
    include_in_schema=False,
    sync_to_thread=False,
)
def unserved(request: Req, rest: FromPath[str]) -> Response[m.ErrorBody]:
    """Any other MLflow endpoint (tracking, mostly): still MLflow's `ENDPOINT_NOT_FOUND`, which
    clients use to fall back to older endpoints, with a message that says what to do. No token
    needed: it tells nothing about the registry."""
    message = m.unserved_message(request.method, request.url.path)
    return Response(m.ErrorBody("ENDPOINT_NOT_FOUND", message), status_code=404)


def unserved_routers() -> list[Router]:
    """Registered after the served routes, which win: these only take what nothing else does."""
    return [Router(path=prefix, route_handlers=[unserved]) for prefix in MLFLOW_PREFIXES]


def mlflow_router() -> Router:
    return Router(
        path=PREFIX,
        route_handlers=[RegisteredModels, ModelVersions, WebhookController],
        guards=[mlflow_guard],
        dependencies={
            "registry": provide(lambda web: web.registry),
            "webhooks": provide(lambda web: web.webhooks),
        },
        exception_handlers=MLFLOW_HANDLERS,
        request_class=DepthCheckedRequest,
        before_request=refuse_nul_in_url,
    )
