"""The route feed: the table of where each model's traffic goes, kept in memory, and a
long-poll that answers each gateway with what changed since the revision it has.

The cost of a change grows with what changed, not with the number of models or gateways:

- **One watcher per process** asks the store for the models changed since the clock it has
  seen (registry/ports.py `RouteState`: one indexed query, a few times a second, and at once
  after a write made in this process), reads only those models, in batches, and wakes every
  waiting gateway together.
- **Deltas**: a gateway that has revision R gets the models that changed after R (and the
  names of those that went); a full table only on first contact (`after=-1`), or when it is
  further behind than the changes kept in memory, or ahead of this replica (the database was
  replaced).
- **Shared answers**: an answer is encoded once per revision and per `after`, whatever the
  number of gateways waiting for it.

The revision is the store's clock (one per registry, so every replica numbers changes alike and
a gateway may move between replicas) plus the generation of the servers this process runs (a
local deployer: `modelyard serve`, one process).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
from collections.abc import Iterable
from typing import Final

import msgspec

from contract.routes import ModelRoute, RouteChanges
from registry.catalog.service import Registry
from registry.errors import RegistryError
from registry.ports import RouteState, Serving
from registry.serving.deployments import Deployments
from registry.serving.routes import model_route

log = logging.getLogger("modelyard.routes")

POLL_S: Final = 0.2  # how often the watcher looks for changes made through other replicas
BATCH: Final = 500  # models read per batch
KEPT: Final = 100_000  # changes kept for deltas; a gateway further behind gets a full table
_encoder = msgspec.json.Encoder()


class RouteFeed:
    def __init__(
        self, registry: Registry, deployments: Deployments | None, poll_s: float = POLL_S
    ) -> None:
        self.state: RouteState = registry.store
        self.deployments = deployments
        self.poll_s = poll_s
        self.routes: dict[str, ModelRoute] = {}
        self.revision = -1  # -1 until the first table is built
        self._clock = 0  # the store's clock, as far as `routes` has caught up
        self._generation = 0  # local server changes applied
        self._served: dict[tuple[str, int], str] = {}
        self._local: set[str] = set()  # models whose local servers changed, to rebuild
        self._log: list[tuple[int, str]] = []  # (revision, model name), revisions ascending
        self._floor = 0  # deltas are known for every `after` >= floor
        self._encoded: dict[int, bytes] = {}  # answers for this revision, by `after`
        self._bumped = asyncio.Event()
        self._poke = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        registry.subscribe(lambda _model: self._poke.set())
        if deployments is not None:
            self._served = dict(deployments.served())
            deployments.subscribe(self._servers_changed)

    # --- the long-poll ----------------------------------------------------------------------

    async def wait(self, after: int, timeout_s: float) -> RouteChanges | None:
        """What changed after revision `after` once there is something; None if nothing
        changed within `timeout_s`. Raises `RegistryError` when the store cannot be read."""
        self._start()
        if after < 0 or after > self.revision:
            # first contact (it sees every write committed before it asked), or a gateway
            # that another replica has told of changes this one has not seen yet
            await self.catch_up()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while after == self.revision:
            bumped = self._bumped
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(bumped.wait(), remaining)
        return self.changes_since(after)

    async def wait_encoded(self, after: int, timeout_s: float) -> bytes | None:
        """`wait`, as JSON: encoded once per revision and `after`, shared by every caller."""
        changes = await self.wait(after, timeout_s)
        if changes is None:
            return None
        key = -1 if changes.full else after
        if changes.revision != self.revision:  # moved on while this caller was waking up
            return _encoder.encode(changes)
        encoded = self._encoded.get(key)
        if encoded is None:
            encoded = self._encoded[key] = _encoder.encode(changes)
        return encoded

    def changes_since(self, after: int) -> RouteChanges:
        if after < self._floor or after > self.revision:
            return RouteChanges(self.revision, dict(self.routes))
        start = bisect.bisect_right(self._log, after, key=lambda entry: entry[0])
        names = {name for _, name in self._log[start:]}
        models = {n: self.routes[n] for n in names if n in self.routes}
        removed = sorted(names - models.keys())
        return RouteChanges(self.revision, models, removed, full=False)

    # --- keeping up with the store ----------------------------------------------------------

    def poke(self) -> None:
        """Look at the store now: a change was committed elsewhere (another replica)."""
        self._poke.set()

    def _start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        failing = False
        while True:
            self._poke.clear()
            try:
                await self.catch_up()
            except RegistryError as exc:
                if not failing:
                    log.warning("route feed cannot read the store: %s", exc.message)
                failing = True
            else:
                failing = False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poke.wait(), self.poll_s)

    async def catch_up(self) -> None:
        """Bring the table up to the store's latest committed change."""
        async with self._lock:
            if self.revision < 0:
                await self._build_all()
                return
            clock, names = self._clock, set(self._local)
            while True:
                found = await self.state.changed_models(clock, BATCH)
                names.update(name for name, _ in found)
                if found:
                    clock = found[-1][1]
                if len(found) < BATCH:
                    break
            if not names:
                return
            local = bool(self._local)
            servings = {s.model.name: s for s in await self._serving(sorted(names))}
            self._local -= names
            for name in names:
                serving = servings.get(name)
                if serving is None:
                    self.routes.pop(name, None)
                else:
                    self.routes[name] = self._route(serving)
            self._clock = clock
            self._generation += local
            self._bump(names)

    async def _build_all(self) -> None:
        clock = await self.state.route_clock()  # first: a change after it is read again
        routes: dict[str, ModelRoute] = {}
        after: str | None = None
        while True:
            page = await self.state.serving_page(after, BATCH)
            routes.update((s.model.name, self._route(s)) for s in page)
            if len(page) < BATCH:
                break
            after = page[-1].model.name
        self.routes, self._clock, self._local = routes, clock, set()
        self.revision = self._floor = clock + self._generation
        self._log.clear()
        self._announce()

    async def _serving(self, names: list[str]) -> list[Serving]:
        found: list[Serving] = []
        for start in range(0, len(names), BATCH):
            found += await self.state.serving(names[start : start + BATCH])
        return found

    def _route(self, serving: Serving) -> ModelRoute:
        return model_route(serving.model, serving.versions, self._served)

    def _bump(self, names: Iterable[str]) -> None:
        self.revision = self._clock + self._generation
        self._log.extend((self.revision, name) for name in sorted(names))
        if len(self._log) > KEPT:
            cut = self._log[len(self._log) - KEPT // 2][0]  # keep whole revisions
            start = bisect.bisect_right(self._log, cut - 1, key=lambda entry: entry[0])
            self._floor = cut - 1
            del self._log[:start]
        self._announce()

    def _announce(self) -> None:
        self._encoded = {}
        bumped, self._bumped = self._bumped, asyncio.Event()
        bumped.set()

    def _servers_changed(self) -> None:
        assert self.deployments is not None
        served = dict(self.deployments.served())
        old = self._served
        keys = {k for k in old.keys() | served.keys() if old.get(k) != served.get(k)}
        self._served = served
        if keys:
            self._local.update(model for model, _ in keys)
            self._poke.set()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
