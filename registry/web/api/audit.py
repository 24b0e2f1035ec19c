"""REST: the audit log, per model and per version, and its chain check."""

from __future__ import annotations

from litestar import Controller, get

from registry.catalog.audit import ChainReport
from registry.catalog.domain import model_scope, validate_name
from registry.web.api.context import (
    Cursor,
    Limit,
    PathStr,
    RegistryDep,
    VersionNo,
)
from registry.web.api.pagination import decode_int_cursor, encode_cursor
from registry.web.api.schemas import AuditPage


class AuditController(Controller):
    path = "/models/{name:str}"
    tags = ["audit"]

    async def _page(
        self,
        registry: RegistryDep,
        name: PathStr,
        version: int | None,
        limit: int,
        cursor: str | None,
    ) -> AuditPage:
        after = decode_int_cursor("audit", cursor)
        items = await registry.audit_events(name, version, after or 0, limit + 1)
        more = len(items) > limit
        items = items[:limit]
        return AuditPage(items, encode_cursor("audit", items[-1].seq) if more else None)

    @get("/audit")
    async def model_audit(
        self, registry: RegistryDep, name: PathStr, limit: Limit = 100, cursor: Cursor = None
    ) -> AuditPage:
        return await self._page(registry, name, None, limit, cursor)

    @get("/versions/{version:int}/audit")
    async def version_audit(
        self,
        registry: RegistryDep,
        name: PathStr,
        version: VersionNo,
        limit: Limit = 100,
        cursor: Cursor = None,
    ) -> AuditPage:
        return await self._page(registry, name, version, limit, cursor)

    @get("/audit/verify")
    async def verify(self, registry: RegistryDep, name: PathStr) -> ChainReport:
        """Recompute the model's hash chain; `ok: false` names the first event that breaks it."""
        return await registry.verify_chain(model_scope(validate_name(name)))
