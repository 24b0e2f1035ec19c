"""Health checks of the endpoints the gateway routes the served versions to, until each has
answered once: readiness (registry/serving/readiness.py) waits for them while the process starts.
Once an endpoint answered, the breakers judge it on real requests; it is not probed again.

A BentoML upstream is asked `GET /readyz`, an Open Inference Protocol one
`GET /v2/health/ready`; 200 is an answer, and so is 404, 405 or 501 (the server is up, it has
no such health path). Anything else, or no connection, is not (yet)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Final

import httpx

from contract.health import GatedEndpoints, Probe
from gateway.follow import RouteFollower

PROBE_EVERY_S: Final = 0.2
PROBE_TIMEOUT_S: Final = 2.0
NO_HEALTH_PATH: Final = frozenset({404, 405, 501})


def health_path(protocol: str) -> str:
    return "/v2/health/ready" if protocol == "oip" else "/readyz"


class UpstreamChecks:
    def __init__(self, follower: RouteFollower, every_s: float = PROBE_EVERY_S) -> None:
        self.follower = follower
        self.every_s = every_s
        self._probes: dict[str, Probe] = {}
        self._task: asyncio.Task[None] | None = None

    def probes(self) -> Mapping[str, Probe]:
        return self._probes

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        seen: int | None = None  # the table revision `wanted` was read from
        gated = GatedEndpoints()
        wanted: Mapping[str, str] = {}
        async with httpx.AsyncClient(timeout=PROBE_TIMEOUT_S) as client:
            while True:
                table = self.follower.table
                if table is not None and table.revision != seen:
                    # only when it changed, and only its changed models: it may hold
                    # thousands, and this runs on the gateway's event loop
                    seen, wanted = table.revision, gated.update(table)
                    self._probes = {e: p for e, p in self._probes.items() if e in wanted}
                pending = [
                    (endpoint, protocol)
                    for endpoint, protocol in wanted.items()
                    if endpoint not in self._probes or not self._probes[endpoint].answered
                ]
                await asyncio.gather(*(self._probe(client, e, p) for e, p in pending))
                await asyncio.sleep(self.every_s)

    async def _probe(self, client: httpx.AsyncClient, endpoint: str, protocol: str) -> None:
        path = health_path(protocol)
        try:
            answer = await client.get(endpoint + path)
        except httpx.HTTPError as exc:
            probe = Probe(False, f"GET {path}: {type(exc).__name__} {exc}".strip())
        else:
            ok = answer.status_code == 200 or answer.status_code in NO_HEALTH_PATH
            probe = Probe(ok, None if ok else f"GET {path} answered {answer.status_code}")
        self._probes[endpoint] = probe  # (one no longer wanted goes at the next round)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
