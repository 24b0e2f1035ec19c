"""Following the registry's route feed. The gateway keeps serving the last table it got when
the registry cannot be reached, and says so (readiness detail, `registry_up` metric)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Final, Protocol

import httpx
import msgspec

from contract.routes import RouteTable
from gateway.errors import FeedUnavailable

log = logging.getLogger("modelyard.gateway")

WAIT_S: Final = 20.0  # how long one long-poll may hang in the registry
RETRY_S: Final = 1.0
_table = msgspec.json.Decoder(RouteTable)


class RouteSource(Protocol):
    """Where the table comes from: the registry over HTTP (`HttpRoutes`), or in `modelyard
    serve` the registry in the same process (`modelyard.bridges`). Raises `FeedUnavailable`
    (or an HTTP or OS error) when the registry cannot answer."""

    async def next(self, after: int, wait_s: float) -> RouteTable | None:
        """The table once its revision is past `after`, or None after `wait_s`."""
        ...

    async def close(self) -> None: ...


class HttpRoutes:
    """A gateway of its own: long-polls `GET /api/v1/routes` on the registry."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client

    async def next(self, after: int, wait_s: float) -> RouteTable | None:
        r = await self._client.get("/api/v1/routes", params={"after": after, "wait_s": wait_s})
        if r.status_code == 204:
            return None
        r.raise_for_status()
        return _table.decode(r.content)

    async def close(self) -> None:
        return None  # the client belongs to whoever made it


def registry_client(registry_url: str, token: str) -> httpx.AsyncClient:
    """The one HTTP client a standalone gateway uses to talk to the registry."""
    return httpx.AsyncClient(
        base_url=registry_url.rstrip("/"),
        headers={"Authorization": f"Bearer {token}"},
        timeout=httpx.Timeout(WAIT_S + 10.0, connect=2.0),
    )


class RouteFollower:
    def __init__(self, source: RouteSource) -> None:
        self.source = source
        self.table: RouteTable | None = None
        self.registry_up = False
        self.problem: str | None = None
        self.since: float | None = None  # when the registry stopped answering
        self._task: asyncio.Task[None] | None = None
        self._first = asyncio.Event()

    async def start(self, first_wait_s: float = 5.0) -> None:
        """Begin following; wait a little for the first table so traffic can flow at once."""
        self._task = asyncio.get_running_loop().create_task(self._run())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._first.wait(), first_wait_s)

    async def _run(self) -> None:
        while True:
            after = self.table.revision if self.table is not None else -1
            try:
                table = await self.source.next(after, WAIT_S if self.table else 0.0)
            except (httpx.HTTPError, OSError, ValueError, FeedUnavailable) as exc:
                if self.registry_up or self.problem is None:
                    log.warning("route feed unreachable, serving revision %s: %s", after, exc)
                    self.since = time.time()
                self.registry_up, self.problem = False, f"{type(exc).__name__}: {exc}"
                await asyncio.sleep(RETRY_S)
                continue
            self.registry_up, self.problem, self.since = True, None, None
            if table is not None:
                self.table = table
                self._first.set()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.source.close()
