"""Keep the model servers in line with the registry: versions in Production or Staging that
carry a Bento archive (and no external `endpoint`) should run; nothing else should.

The reconciler wakes on every registry change and every few seconds, reads what should run
and asks the `ModelServers` port to start or stop the difference.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Final

from registry.catalog.domain import ModelVersion
from registry.catalog.service import Registry
from registry.errors import RegistryError
from registry.ports import ModelServers, ServerState
from registry.serving.rules import wants_server

log = logging.getLogger("modelyard.deployments")

RESYNC_S: Final = 5.0
PAGE: Final = 500


class Deployments:
    def __init__(self, registry: Registry, servers: ModelServers) -> None:
        self.registry = registry
        self.servers = servers
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._served: dict[tuple[str, int], str] = {}
        self.generation = 0  # grows whenever the set of ready endpoints changes
        self._listeners: list[Callable[[], None]] = []
        #: The versions that should run, as of the latest reconcile (None: none done yet).
        self.wanted: list[ModelVersion] | None = None
        #: Wanted versions the servers refused to run, and why (e.g. no Bento tag).
        self.refused: dict[tuple[str, int], str] = {}
        registry.subscribe(lambda _model: self._wake.set())
        servers.subscribe(self._servers_changed)

    def subscribe(self, listener: Callable[[], None]) -> None:
        """Call `listener()` when a version starts or stops answering somewhere."""
        self._listeners.append(listener)

    def served(self) -> dict[tuple[str, int], str]:
        """Endpoints of the servers that are ready now."""
        return self._served

    def _servers_changed(self) -> None:
        ready = {
            (s.model, s.version): s.endpoint
            for s in self.servers.states()
            if s.status == "ready" and s.endpoint is not None
        }
        if ready != self._served:
            self._served = ready
            self.generation += 1
            for listener in self._listeners:
                listener()

    async def desired(self) -> list[ModelVersion]:
        """Every version that should run: read in batches of models (a fixed number of queries
        per `PAGE` models, `RouteState.serving_page`), not a query per model."""
        wanted: list[ModelVersion] = []
        after: str | None = None
        while True:
            page = await self.registry.store.serving_page(after, PAGE)
            for serving in page:
                wanted += [v for v in serving.versions if wants_server(v)]
            if len(page) < PAGE:
                return wanted
            after = page[-1].model.name

    async def reconcile(self) -> None:
        desired = await self.desired()
        wanted = {(v.model, v.version): v for v in desired}
        running = {(s.model, s.version) for s in self.servers.states()}
        for key in running - wanted.keys():
            await self.servers.stop(*key)
        refused: dict[tuple[str, int], str] = {}
        for key in wanted.keys() - running:
            try:
                self.servers.ensure(wanted[key])
            except RegistryError as exc:
                if key not in self.refused:
                    log.warning("cannot serve %s v%s: %s", key[0], key[1], exc.message)
                refused[key] = exc.message
        self.wanted, self.refused = desired, refused

    def states(self) -> list[ServerState]:
        return self.servers.states()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def _loop(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self.reconcile()
            except RegistryError as exc:  # store briefly unreachable: try again on the next tick
                log.warning("reconcile failed: %s", exc.message)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), RESYNC_S)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.servers.close()
