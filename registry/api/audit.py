"""REST: the audit log, per model and per version, and its chain check."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, get
from litestar.params import Parameter

from registry.api.pagination import decode_cursor, encode_cursor
from registry.api.schemas import AuditPage
from registry.audit import ChainReport
from registry.domain import model_scope, validate_name
from registry.service import Registry

Limit = Annotated[int, Parameter(ge=1, le=1000)]


class AuditController(Controller):
    path = "/models/{name:str}"
    tags = ["audit"]

    async def _page(self, registry: Registry, name: str, version: int | None, limit: int, cursor: str | None) -> AuditPage:
        after = decode_cursor("audit", cursor)
        items = await registry.audit_events(name, version, int(after or 0), limit + 1)
        more = len(items) > limit
        items = items[:limit]
        return AuditPage(items, encode_cursor("audit", items[-1].seq) if more else None)

    @get("/audit")
    async def model_audit(self, registry: Registry, name: str, limit: Limit = 100, cursor: str | None = None) -> AuditPage:
        return await self._page(registry, name, None, limit, cursor)

    @get("/versions/{version:int}/audit")
    async def version_audit(self, registry: Registry, name: str, version: int, limit: Limit = 100, cursor: str | None = None) -> AuditPage:
        return await self._page(registry, name, version, limit, cursor)

    @get("/audit/verify")
    async def verify(self, registry: Registry, name: str) -> ChainReport:
        """Recompute the model's hash chain; `ok: false` names the first event that breaks it."""
        return await registry.verify_chain(model_scope(validate_name(name)))
