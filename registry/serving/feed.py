"""The route feed: the table of where each model's traffic goes, with a revision, and a
long-poll that answers as soon as the revision moves past what a gateway already has.

The revision is the registry's change count (every committed change appends to an audit
chain) plus the generation of locally run servers (endpoints that came up or went away).
Local changes wake waiters at once; changes made through another registry replica are seen by
re-reading the count a few times a second, so every gateway hears of a change within 1 s.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Final

from contract.routes import ModelRoute, RouteTable
from registry.catalog.changes import ModelFilter, VersionFilter
from registry.catalog.domain import EXCLUSIVE_STAGES, ModelVersion
from registry.catalog.service import Registry
from registry.errors import NotFound
from registry.serving.deployments import Deployments
from registry.serving.routes import model_route

RECHECK_S: Final = 0.25
PAGE: Final = 500


class RouteFeed:
    def __init__(self, registry: Registry, deployments: Deployments | None) -> None:
        self.registry = registry
        self.deployments = deployments
        self._changed = asyncio.Event()
        registry.subscribe(lambda _model: self._changed.set())
        if deployments is not None:
            deployments.subscribe(self._changed.set)

    async def revision(self) -> int:
        local = self.deployments.generation if self.deployments is not None else 0
        return await self.registry.change_count() + local

    async def table(self) -> RouteTable:
        revision = await self.revision()
        served = self.deployments.served() if self.deployments is not None else {}
        models: dict[str, ModelRoute] = {}
        after: str | None = None
        while True:
            page = await self.registry.list_models(ModelFilter(), after, PAGE)
            for model in page:
                models[model.name] = model_route(model, await self._versions(model.name), served)
            if len(page) < PAGE:
                break
            after = page[-1].name
        return RouteTable(revision=revision, models=models)

    async def _versions(self, name: str) -> list[ModelVersion]:
        """The versions that may take traffic: Production, Staging, any served by an outside
        endpoint (so that it can be pinned), and any an alias or the traffic policy names."""
        found: dict[int, ModelVersion] = {}
        wheres = [VersionFilter(stage=s) for s in EXCLUSIVE_STAGES]
        for where in [*wheres, VersionFilter(with_endpoint=True)]:
            for v in await self.registry.list_versions(name, where, None, PAGE):
                found[v.version] = v
        model = await self.registry.get_model(name)
        wanted = set(model.aliases.values())
        if model.traffic is not None:
            wanted |= {s.version for s in model.traffic.splits}
            wanted |= {r.version for r in model.traffic.rules}
            if model.traffic.shadow is not None:
                wanted.add(model.traffic.shadow.version)
        for number in sorted(wanted - found.keys()):
            with contextlib.suppress(NotFound):
                found[number] = await self.registry.get_version(name, number)
        return list(found.values())

    async def wait(self, after: int, timeout_s: float) -> RouteTable | None:
        """The table once its revision is past `after`; None if nothing changed in time."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            self._changed.clear()
            if await self.revision() > after:
                return await self.table()
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, RECHECK_S))
