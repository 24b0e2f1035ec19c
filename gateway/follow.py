"""Following the registry's route feed. The gateway keeps serving the last table it got when
the registry cannot be reached, and says so (readiness detail, `registry_up` metric).

The registry answers with what changed since the revision the gateway has (a full table on
first contact); the gateway applies it to a copy of its table and swaps the copy in, so a
request in flight keeps the table it started with.

With a `saved` path (under the data dir), the latest table is kept on local disk (rewritten at
most once per `SAVE_EVERY_S`, and on close), and a gateway that starts while the registry is
down serves the one saved (never "no model named"): its first poll still asks for the
registry's current table (`after=-1`), so a registry whose revisions started again from 0 is
followed too. A poll that gets no answer within its wait
plus `MARGIN_S` counts as the registry being down: a registry that accepts connections and
never answers is not reported up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from pathlib import Path
from typing import Final, Protocol

import httpx
import msgspec

from contract.routes import RouteChanges, RouteTable, apply_changes
from gateway.errors import FeedUnavailable

log = logging.getLogger("modelyard.gateway")

WAIT_S: Final = 20.0  # how long one long-poll may hang in the registry
RETRY_S: Final = 1.0
SAVED_ROUTES: Final = "gateway-routes.json"  # the last table, under the data dir
MARGIN_S: Final = 5.0  # a poll unanswered after its wait plus this: the registry is down
SAVE_EVERY_S: Final = 1.0  # the saved table is rewritten at most this often
_table = msgspec.json.Decoder(RouteTable)
_changes = msgspec.json.Decoder(RouteChanges)


class RouteSource(Protocol):
    """Where the table comes from: the registry over HTTP (`HttpRoutes`), or in `modelyard
    serve` the registry in the same process (`modelyard.bridges`). Raises `FeedUnavailable`
    (or an HTTP or OS error) when the registry cannot answer."""

    async def next(self, after: int, wait_s: float) -> RouteChanges | None:
        """What changed after revision `after` (every model when `after` is -1), once there
        is something; None after `wait_s`."""
        ...

    async def close(self) -> None: ...


class HttpRoutes:
    """A gateway of its own: long-polls `GET /api/v1/routes` on the registry."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client

    async def next(self, after: int, wait_s: float) -> RouteChanges | None:
        r = await self._client.get("/api/v1/routes", params={"after": after, "wait_s": wait_s})
        if r.status_code == 204:
            return None
        r.raise_for_status()
        return _changes.decode(r.content)

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
    def __init__(self, source: RouteSource, saved: Path | None = None) -> None:
        self.source = source
        self.saved = saved
        self.table: RouteTable | None = load_table(saved) if saved is not None else None
        self.fresh = False  # a table came from the registry since this process started
        self.registry_up = False
        self.problem: str | None = None
        self.since: float | None = None  # when the registry stopped answering
        self._task: asyncio.Task[None] | None = None
        self._first = asyncio.Event()
        self._saving: asyncio.Task[None] | None = None
        self._saved_revision: int | None = None

    async def start(self, first_wait_s: float = 5.0) -> None:
        """Begin following; wait a little for the first table so traffic can flow at once."""
        self._task = asyncio.get_running_loop().create_task(self._run())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._first.wait(), first_wait_s)

    async def _run(self) -> None:
        while True:
            fresh = self.fresh
            after = self.table.revision if self.table is not None and fresh else -1
            wait_s = WAIT_S if fresh else 0.0
            try:
                changes = await asyncio.wait_for(self.source.next(after, wait_s), wait_s + MARGIN_S)
            except (httpx.HTTPError, OSError, ValueError, FeedUnavailable, TimeoutError) as exc:
                if self.registry_up or self.problem is None:
                    revision = self.table.revision if self.table is not None else None
                    log.warning("route feed unreachable, serving revision %s: %r", revision, exc)
                    self.since = time.time()
                problem = str(exc) or f"no answer in {wait_s + MARGIN_S:g} s"
                self.registry_up, self.problem = False, f"{type(exc).__name__}: {problem}"
                if self.table is not None:  # a saved one: serve it rather than wait
                    self._first.set()
                await asyncio.sleep(RETRY_S)
                continue
            self.registry_up, self.problem, self.since = True, None, None
            if changes is not None:
                # a new table object: requests in flight keep the one they started with
                self.table = apply_changes(self.table if fresh else None, changes)
                self.fresh = True
                self._first.set()
                self._save_soon()

    def _save_soon(self) -> None:
        """Save the latest table, at most once per `SAVE_EVERY_S` (a burst of changes costs
        one write), on a thread: the table object is never modified, only replaced."""
        if self.saved is None or self._saving is not None:
            return
        self._saving = asyncio.get_running_loop().create_task(self._save_later(self.saved))

    async def _save_later(self, path: Path) -> None:
        try:
            while True:
                table = self.table
                if table is None or table.revision == self._saved_revision:
                    return
                await asyncio.to_thread(save_table, path, table)
                self._saved_revision = table.revision
                await asyncio.sleep(SAVE_EVERY_S)
        finally:
            self._saving = None

    async def close(self) -> None:
        for task in (self._task, self._saving):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        table = self.table
        unsaved = table is not None and table.revision != self._saved_revision
        if self.saved is not None and table is not None and self.fresh and unsaved:
            await asyncio.to_thread(save_table, self.saved, table)  # the last change too
        await self.source.close()


def load_table(path: Path) -> RouteTable | None:
    """The table saved at `path`, or None (none saved, or unreadable: then it is ignored)."""
    try:
        return _table.decode(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, msgspec.DecodeError) as exc:
        log.warning("ignoring the saved route table %s: %s", path, exc)
        return None


def save_table(path: Path, table: RouteTable) -> None:
    """Write `table` to `path` whole or not at all (a temporary file renamed over it)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        temporary.write_bytes(msgspec.json.encode(table))
        os.replace(temporary, path)
    except OSError as exc:  # the disk is no reason to stop following
        log.warning("could not save the route table to %s: %s", path, exc)
