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
