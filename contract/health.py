"""How a process that serves models reports its health: each served version's status, the
verdict of readiness, and which endpoints readiness waits for. Pure.

How a version is doing (`VersionHealth.status`):

    ready          it answers: its local server is up and routed, or its endpoint answered
    not_started    the deployer has not begun its server yet        \\
    preparing      fetching and importing its archive                |  on the way: these hold
    starting       its server starts                                 |  readiness while the
    routing        its server is up, the gateway's routes not yet    |  process starts
    checking       its endpoint has not answered a health check yet /
    restarting     its server failed (or crashed) and is started again
    failed         its server could not start (see `detail`)
    unhealthy      its server exited; it is restarted after a pause
    not_answering  its endpoint has not answered a health check
    ejected        it answered, then failed enough requests for the gateway to eject it
    endpoint       it has an endpoint that this process does not check
    no_deployer    it needs a model server and this process runs none
    not_served     nothing can serve it (see `detail`)
    missing        it does not exist
"""

from __future__ import annotations

from typing import Final, Literal, Protocol

import msgspec

from contract.routes import ModelRoute, RouteTable
from contract.traffic import references

Status = Literal[
    "ready",
    "not_started",
    "preparing",
    "starting",
    "routing",
    "checking",
    "restarting",
    "failed",
    "unhealthy",
    "stopped",
    "not_answering",
    "ejected",
    "not_routed",
    "endpoint",
    "no_deployer",
    "not_served",
    "missing",
]
#: Statuses of a version on its way up: while the process starts, these hold its readiness.
ON_THE_WAY: Final = frozenset({"not_started", "preparing", "starting", "routing", "checking"})


class VersionHealth(msgspec.Struct, frozen=True, omit_defaults=True):
    """How one served version is doing, as this process sees it (statuses: module docstring)."""

    model: str
    version: int
    status: Status
    endpoint: str | None = None
    detail: str | None = None


class Probe(msgspec.Struct, frozen=True):
    """The latest health check of an endpoint: `answered` once it said it is ready."""

    answered: bool
    detail: str | None = None


class Readiness(msgspec.Struct, frozen=True):
    ready: bool
    detail: str | None
    not_ready: list[VersionHealth]


def gated(route: ModelRoute) -> list[int]:
    """The versions of a model that readiness waits for."""
    numbers = {number for _, number in references(route.policy)} | set(route.staging)
    if route.stable is not None:
        numbers.add(route.stable)
    return sorted(numbers)


def gated_endpoints(table: RouteTable) -> dict[str, str]:
    """Endpoint -> protocol of every gated version the table routes to."""
    found: dict[str, str] = {}
    for route in table.models.values():
        for number in gated(route):
            target = route.versions.get(number)
            if target is not None:
                found[target.endpoint] = target.protocol
    return found


class GatedEndpoints:
    """`gated_endpoints` kept up to date as the table changes, in time proportional to what
    changed: a model whose route is the same object as in the previous table (the gateway
    swaps in tables that keep every unchanged model's route, `contract.routes.apply_changes`)
    is not walked again. The answer is this object's own dict: read it, do not keep it."""

    def __init__(self) -> None:
        self._routes: dict[str, ModelRoute] = {}
        self._of: dict[str, dict[str, str]] = {}  # model -> its gated endpoints
        self._users: dict[str, int] = {}  # endpoint -> how many models gate on it
        self.endpoints: dict[str, str] = {}  # endpoint -> protocol

    def update(self, table: RouteTable) -> dict[str, str]:
        current = table.models
        for name in self._routes.keys() - current.keys():
            self._drop(name)
        for name, route in current.items():
            if self._routes.get(name) is not route:
                self._drop(name)
                self._add(name, route)
        return self.endpoints

    def _add(self, name: str, route: ModelRoute) -> None:
        mine: dict[str, str] = {}
        for number in gated(route):
            target = route.versions.get(number)
            if target is not None:
                mine[target.endpoint] = target.protocol
        for endpoint, protocol in mine.items():
            self._users[endpoint] = self._users.get(endpoint, 0) + 1
            self.endpoints[endpoint] = protocol
        self._routes[name], self._of[name] = route, mine

    def _drop(self, name: str) -> None:
        self._routes.pop(name, None)
        for endpoint in self._of.pop(name, {}):
            left = self._users[endpoint] - 1
            if left:
                self._users[endpoint] = left
            else:
                del self._users[endpoint], self.endpoints[endpoint]


class ReadinessSource(Protocol):
    """What the HTTP layer asks (modelyard/readiness.py gathers it)."""

    def check(self) -> Readiness:
        """The verdict now (it may end the start-up)."""
        ...

    def versions(self) -> list[VersionHealth]:
        """Every served version this process knows about, with its status."""
        ...


class Health(msgspec.Struct, omit_defaults=True):
    status: str  # ok | starting (503: model servers on their way) | unavailable (503: store)
    detail: str | None = None
    rollouts: str | None = None  # "leading": this replica drives the rollouts; or "standby"
    #: Served versions that do not answer now (statuses: the module docstring).
    not_ready: list[VersionHealth] = []


def health_of(source: ReadinessSource | None, rollouts: str | None = None) -> tuple[Health, int]:
    """The body and status code of a `/readyz` answer: 200 when ready, else 503."""
    if source is None:
        return Health("ok", rollouts=rollouts), 200
    found = source.check()
    body = Health("ok" if found.ready else "starting", found.detail, rollouts, found.not_ready)
    return body, 200 if found.ready else 503
