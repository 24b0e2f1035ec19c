"""Readiness and the serving state of a policy's versions, from hand-built deployer states and
route tables: versions on their way hold readiness during the start-up, failed ones are listed
but hold nothing, and nothing holds once the start-up is over. No IO."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from contract.health import GatedEndpoints, Probe, VersionHealth, gated, gated_endpoints
from contract.routes import ModelRoute, RouteTable, VersionRoute
from contract.traffic import TrafficPolicy
from registry.catalog.domain import ModelVersion, Stage, VersionStatus
from registry.ports import ServerState
from registry.serving.readiness import local_versions, routed, upstream_versions, verdict
from registry.serving.rules import traffic_versions

NOW = datetime(2026, 11, 26, tzinfo=UTC)


def version(
    n: int, stage: Stage = Stage.PRODUCTION, endpoint: str | None = None, model: str = "iris"
) -> ModelVersion:
    return ModelVersion(
        model,
        n,
        stage,
        VersionStatus.READY,
        "",
        "s3://b/k",
        "sha256:" + "0" * 64,
        1,
        "bento",
        "iris:v",
        [],
        endpoint,
        None,
        None,
        {},
        {},
        {},
        "t",
        NOW,
        NOW,
        1,
    )


def server(n: int, status: str, restarts: int = 0, port: int = 0) -> ServerState:
    endpoint = f"http://127.0.0.1:{port}" if status == "ready" else None
    return ServerState("iris", n, status, endpoint, restarts, detail=f"v{n} {status}")


def statuses(found: list[VersionHealth]) -> dict[int, str]:
    return {v.version: v.status for v in found}


# --- the local deployer's versions -----------------------------------------------------------


def test_local_versions_follow_their_servers_and_the_gateways_routes() -> None:
    wanted = [version(n, Stage.STAGING) for n in range(1, 8)]
    servers = [
        server(2, "preparing"),
        server(3, "starting", restarts=1),  # it failed before: restarting
        server(4, "ready", port=4004),  # up, the gateway's routes have it
        server(5, "ready", port=4005),  # up, the gateway's routes do not have it yet
        server(6, "failed"),
    ]
    routes = {("iris", 4): "http://127.0.0.1:4004", ("iris", 5): "http://127.0.0.1:9999"}
    refused = {("iris", 7): "no Bento archive to serve"}
    found = local_versions(wanted, servers, refused, routes)
    assert statuses(found) == {
        1: "not_started",
        2: "preparing",
        3: "restarting",
        4: "ready",
        5: "routing",
        6: "failed",
        7: "failed",
    }
    assert next(v for v in found if v.version == 7).detail == "no Bento archive to serve"
    alone = local_versions(wanted[4:5], servers, {}, None)  # no gateway in this process
    assert statuses(alone) == {5: "ready"}


def test_on_the_way_holds_the_start_up_and_failed_does_not() -> None:
    servers = [server(1, "starting"), server(2, "ready", port=1)]
    found = local_versions([version(1), version(2, Stage.STAGING)], servers, {}, None)
    starting = verdict(found, started_up=False)
    assert not starting.ready and starting.detail == "waiting for iris v1 (starting)"
    assert [(v.version, v.status) for v in starting.not_ready] == [(1, "starting")]
    failed = local_versions([version(1)], [server(1, "failed")], {}, None)
    answer = verdict(failed, started_up=False)
    assert answer.ready and answer.detail is None
    assert [(v.version, v.status, v.detail) for v in answer.not_ready] == [
        (1, "failed", "v1 failed")
    ]
    assert verdict(found, started_up=True).ready  # after the start-up: listed, not holding
    assert verdict(found, started_up=True).not_ready == starting.not_ready


def test_blockers_always_block_and_waiting_only_during_the_start_up() -> None:
    assert not verdict([], blockers=["no route table yet"], started_up=True).ready
    listing = ["the model servers to run are not listed yet"]
    assert not verdict([], waiting=listing, started_up=False).ready
    assert verdict([], waiting=listing, started_up=True).ready


# --- endpoints the gateway routes to ----------------------------------------------------------


def table() -> RouteTable:
    def at(n: int) -> VersionRoute:
        return VersionRoute(n, f"http://m{n}:3000", "bentoml")

    policy = msgspec.convert(
        {"splits": [{"version": 3, "weight": 10}], "shadow": {"version": 4}}, TrafficPolicy
    )
    iris = ModelRoute("iris", 1, {n: at(n) for n in (1, 2, 3, 4, 5)}, {}, policy, staging=[2, 6])
    oip = ModelRoute("oip", 1, {1: VersionRoute(1, "http://oip:9000", "oip")}, {}, TrafficPolicy())
    return RouteTable(7, {"iris": iris, "oip": oip})


def test_readiness_waits_for_stable_staging_and_named_versions_only() -> None:
    t = table()
    assert gated(t.models["iris"]) == [1, 2, 3, 4, 6]  # v5: routed for pins, never waited for
    assert gated_endpoints(t) == {f"http://m{n}:3000": "bentoml" for n in (1, 2, 3, 4)} | {
        "http://oip:9000": "oip"
    }
    assert routed(t)[("iris", 5)] == "http://m5:3000"


def test_gated_endpoints_kept_up_to_date_match_a_full_walk_after_every_change() -> None:
    from contract.routes import RouteChanges, apply_changes

    t = table()
    kept = GatedEndpoints()
    assert kept.update(t) == gated_endpoints(t)
    iris, oip = t.models["iris"], t.models["oip"]
    shared = ModelRoute("copy", 1, {1: VersionRoute(1, "http://oip:9000", "oip")}, {}, oip.policy)
    steps = [
        RouteChanges(8, {"copy": shared}, full=False),  # a second model on one endpoint
        RouteChanges(9, {}, removed=["oip"], full=False),  # still gated by `copy`
        RouteChanges(10, {"iris": msgspec.structs.replace(iris, staging=[])}, full=False),
        RouteChanges(11, {}, removed=["copy", "iris"], full=False),
    ]
    for step in steps:
        t = apply_changes(t, step)
        assert kept.update(t) == gated_endpoints(t), step.revision
    assert kept.endpoints == {}


def test_endpoints_are_ready_once_they_answered_until_ejected() -> None:
    probes = {
        "http://m1:3000": Probe(True),
        "http://m2:3000": Probe(False, "GET /readyz answered 503"),
        "http://m4:3000": Probe(True),
    }
    breakers = {"http://m4:3000": "open", "http://m1:3000": "closed"}
    found = upstream_versions(table(), probes, breakers, skip={("oip", 1)}, started_up=False)
    assert [(v.model, v.version, v.status) for v in found] == [
        ("iris", 1, "ready"),
        ("iris", 2, "checking"),
        ("iris", 3, "checking"),
        ("iris", 4, "ejected"),
        ("iris", 6, "not_routed"),
    ]
    assert found[1].detail == "GET /readyz answered 503" and found[1].endpoint == "http://m2:3000"
    answer = verdict(found, started_up=False)
    assert not answer.ready and "iris v2 (checking), iris v3 (checking)" in (answer.detail or "")
    later = upstream_versions(table(), probes, breakers, skip=set(), started_up=True)
    assert statuses([v for v in later if v.model == "iris"])[2] == "not_answering"
    assert verdict(later, started_up=True).ready


# --- GET /traffic: where the policy's traffic goes ---------------------------------------------


def test_each_version_the_traffic_goes_to_says_whether_it_is_served() -> None:
    policy = msgspec.convert(
        {
            "splits": [{"version": 2, "weight": 10}, {"version": 3, "weight": 5}],
            "rules": [
                {"header": "x", "value": "1", "version": 2},
                {"header": "y", "value": "1", "version": 9},
            ],
            "shadow": {"version": 4},
        },
        TrafficPolicy,
    )
    versions = {
        1: version(1),
        2: version(2, Stage.STAGING),
        3: version(3, Stage.NONE, endpoint="http://m3:3000"),
        4: version(4, Stage.ARCHIVED),  # stored before this check existed
    }
    health = {2: VersionHealth("iris", 2, "starting", detail="v2 starting")}
    view = traffic_versions(policy, 1, versions, health, deployer=True)
    assert [(v.version, v.named_by, v.status, v.serving) for v in view] == [
        (1, ["stable"], "not_started", False),
        (2, ["splits[0]", "rules[0]"], "starting", False),
        (3, ["splits[1]"], "endpoint", None),
        (9, ["rules[1]"], "missing", False),
        (4, ["shadow"], "not_served", False),
    ]
    assert view[4].stage == Stage.ARCHIVED and "no endpoint" in (view[4].detail or "")
    assert view[3].stage is None and view[2].endpoint == "http://m3:3000"
    ready = {1: VersionHealth("iris", 1, "ready", "http://127.0.0.1:1")}
    alone = traffic_versions(TrafficPolicy(), 1, versions, ready, deployer=True)
    assert [(v.status, v.serving, v.endpoint) for v in alone] == [
        ("ready", True, "http://127.0.0.1:1")
    ]
    nobody = traffic_versions(TrafficPolicy(), 1, versions, {}, deployer=False)
    assert [(v.status, v.serving) for v in nobody] == [("no_deployer", None)]
