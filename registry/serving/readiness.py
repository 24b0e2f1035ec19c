"""Whether a process that serves models is ready for traffic, from what its deployer and its
gateway know. Pure.

The served versions are the Production and Staging versions and those the traffic policies
name. While the process starts, readiness waits for each of them to answer: a version on its
way (`contract.health.ON_THE_WAY`: its server prepares or starts, the gateway's routes do not
have it yet, its endpoint has not answered a health check) holds it. A version that failed does
not: it is reported in the answer and the process turns ready without it, because one broken
model must not take a gateway, and every other model behind it, out of its balancer (each
replica would be out at once). The start-up ends at the first ready verdict, or `timeout_s`
after the start, whichever comes first. From then on the process stays ready while it can route
(a version staged later starts while the others serve) and the answer lists what is not ready.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from contract.health import ON_THE_WAY, Probe, Readiness, Status, VersionHealth, gated
from contract.routes import RouteTable
from registry.catalog.domain import ModelVersion
from registry.ports import ServerState

Key = tuple[str, int]


def routed(table: RouteTable) -> dict[Key, str]:
    """Where the table sends each version it routes."""
    return {
        (name, number): target.endpoint
        for name, route in table.models.items()
        for number, target in route.versions.items()
    }


def local_versions(
    wanted: Sequence[ModelVersion],
    servers: Iterable[ServerState],
    refused: Mapping[Key, str],
    routes: Mapping[Key, str] | None,
) -> list[VersionHealth]:
    """The versions a local deployer runs (`wanted`), from its servers' states. `routes`: what
    the gateway of this process routes (None: no gateway here)."""
    states = {(s.model, s.version): s for s in servers}
    out: list[VersionHealth] = []
    for version in wanted:
        key = (version.model, version.version)
        state = states.get(key)
        if key in refused:
            out.append(VersionHealth(*key, "failed", detail=refused[key]))
        elif state is None:
            out.append(VersionHealth(*key, "not_started"))
        else:
            status = _local_status(state, routes)
            out.append(VersionHealth(*key, status, state.endpoint, state.detail))
    return out


#: A local server's status (registry.ports.ServerState) as a version's.
_LOCAL: dict[str, Status] = {
    "preparing": "preparing",
    "starting": "starting",
    "ready": "ready",
    "unhealthy": "unhealthy",
    "failed": "failed",
    "stopped": "stopped",
}


def _local_status(state: ServerState, routes: Mapping[Key, str] | None) -> Status:
    if state.status == "ready":
        if routes is not None and routes.get((state.model, state.version)) != state.endpoint:
            return "routing"
        return "ready"
    if state.status in ("preparing", "starting") and state.restarts > 0:
        return "restarting"  # it failed before: it no longer holds readiness
    return _LOCAL.get(state.status, "failed")


def upstream_versions(
    table: RouteTable,
    probes: Mapping[str, Probe],
    breakers: Mapping[str, str],
    skip: set[Key],
    started_up: bool,
) -> list[VersionHealth]:
    """The gated versions the gateway routes to an endpoint, from the endpoints' health checks
    (`probes`) and the gateway's breakers; `skip` the ones a local deployer reports."""
    out: list[VersionHealth] = []
    for name, route in sorted(table.models.items()):
        for number in gated(route):
            if (name, number) in skip:
                continue
            target = route.versions.get(number)
            if target is None:
                why = "nothing serves it now: the route table has no endpoint for it"
                out.append(VersionHealth(name, number, "not_routed", detail=why))
                continue
            probe = probes.get(target.endpoint)
            if probe is None or not probe.answered:
                status: Status = "not_answering" if started_up else "checking"
                detail = probe.detail if probe is not None else None
                out.append(VersionHealth(name, number, status, target.endpoint, detail))
            elif breakers.get(target.endpoint) == "open":
                why = "the gateway ejected it after failed requests"
                out.append(VersionHealth(name, number, "ejected", target.endpoint, why))
            else:
                out.append(VersionHealth(name, number, "ready", target.endpoint))
    return out


def verdict(
    versions: Sequence[VersionHealth],
    *,
    blockers: Sequence[str] = (),
    waiting: Sequence[str] = (),
    started_up: bool,
) -> Readiness:
    """Ready when nothing blocks (e.g. no route table yet) and, during the start-up, nothing
    is `waiting` (e.g. the deployer has not listed its versions yet) and no version is on its
    way. The answer lists every version that is not ready."""
    holding = [] if started_up else [v for v in versions if v.status in ON_THE_WAY]
    reasons = [*blockers, *([] if started_up else waiting)]
    if holding:
        names = ", ".join(f"{v.model} v{v.version} ({v.status})" for v in holding)
        reasons.append(f"waiting for {names}")
    not_ready = [v for v in versions if v.status != "ready"]
    return Readiness(not reasons, "; ".join(reasons) or None, not_ready)
