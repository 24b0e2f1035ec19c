"""The readiness of this process (`registry.serving.readiness` decides; this gathers what it
needs):
the local deployer's model servers (`serve`), the gateway's route table and the endpoints it
routes the served versions to (`serve`, `gateway`). The store is checked by /readyz itself."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Final

from contract.health import Readiness, VersionHealth
from gateway.front import Gateway
from registry.serving.deployments import Deployments
from registry.serving.readiness import local_versions, routed, upstream_versions, verdict

WATCH_S: Final = 0.1


class ServingReadiness:
    def __init__(
        self,
        *,
        routes: bool,
        timeout_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`routes`: this process runs a gateway, and is not ready before it has a route
        table. `timeout_s`: the longest the start-up waits for versions on their way."""
        self.routes = routes
        self.timeout_s = timeout_s
        self.clock = clock
        self.deployments: Deployments | None = None  # set once the parts run
        self.gateway: Gateway | None = None
        self._started = clock()
        self._up = False  # the start-up is over
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Watch the start-up, so that it ends when everything first answers whether or not
        anyone asked (a version registered later must not hold readiness)."""
        self._started = self.clock()
        self._task = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        while not self.started_up:
            self.check()
            await asyncio.sleep(WATCH_S)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @property
    def started_up(self) -> bool:
        if not self._up and self.clock() - self._started >= self.timeout_s:
            self._up = True
        return self._up

    def versions(self) -> list[VersionHealth]:
        """Every served version this process knows about, with its status."""
        return self._versions(self.started_up)[0]

    def check(self) -> Readiness:
        started_up = self.started_up
        found, blockers, waiting = self._versions(started_up)
        result = verdict(found, blockers=blockers, waiting=waiting, started_up=started_up)
        if result.ready:
            self._up = True
        return result

    def _versions(self, started_up: bool) -> tuple[list[VersionHealth], list[str], list[str]]:
        found: list[VersionHealth] = []
        blockers: list[str] = []
        waiting: list[str] = []
        gateway = self.gateway
        table = gateway.follower.table if gateway is not None else None
        if self.routes and table is None:
            blockers.append("no route table yet")
        local: set[tuple[str, int]] = set()
        deployments = self.deployments
        if deployments is not None:
            if deployments.wanted is None:
                waiting.append("the model servers to run are not listed yet")
            else:
                routes = routed(table) if table is not None else None
                if self.routes and routes is None:
                    routes = {}
                found += local_versions(
                    deployments.wanted, deployments.states(), deployments.refused, routes
                )
                local = {(v.model, v.version) for v in deployments.wanted}
        if gateway is not None and table is not None:
            probes = gateway.checks.probes() if gateway.checks is not None else {}
            now = time.monotonic()
            breakers = {e: b.state(now) for e, b in gateway.breakers.items()}
            found += upstream_versions(table, probes, breakers, local, started_up)
        return found, blockers, waiting
