"""The gateway in front of BentoML: the iris example's v1 under `bentoml serve`, called directly
(`POST /classify`) and through the gateway (`POST /models/iris/classify`).

How, so that one noisy run cannot swing the answer (one 5 s run per path once gave the gateway's
share of the p50 anywhere from -24% to +40%):

- per core: BentoML's `serve` parent and every worker (each in a session of its own), and every
  thread of the modelyard process, on the server CPU; wrk alone on the client CPU. A third path,
  `apart`, is the gateway again with its threads moved to the client CPU for its rounds (beside
  wrk, which at these rates uses little of it): the gateway on a core of its own, as it runs
  when deployed (its own pods), so BentoML and the gateway no longer take turns on one core and
  evict each other's caches. Both layouts are reported; the co-located one is the strict one;
- a peer for scale: nginx (one worker, keep-alive pool) as the proxy in front of the same
  BentoML, on the server CPU like the co-located gateway, measured the same way (its share of
  the p50 and of the CPU). What a proxy written in C costs there shows how much of the
  gateway's share is any extra hop on one shared core (kernel wakeups and context switches)
  rather than the gateway's own code;
- interleaved rounds: per concurrency, one warm-up round per path, then `rounds` rounds of
  `duration_s` alternating direct, gateway, direct, gateway ...; per path the median of the
  rounds' req/s, p50 and p99, and the min-max spread of the p50s. The gateway's share of the p50
  is (median gateway p50 - median direct p50) / median gateway p50;
- CPU per request, which noise hardly moves: the CPU time (utime + stime, /proc/<pid>/stat) the
  modelyard process used during the gateway rounds over the requests they served, next to
  BentoML's (summed over its processes) measured the same way over the same rounds; the
  gateway's CPU share is gateway / (gateway + BentoML). Under load the shared core is busy all
  the time, so each figure alone follows the core's speed of the moment (on a shared VM it
  varies); their ratio, taken over the same instants, does not. BentoML's CPU per request in
  the direct rounds is reported beside it, and each side's CPU while idle (one round's length
  before the rounds): a server that burnt CPU while idle would skew its figure.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from adapters.process_tree import descendants
from loadtests.benchkit import (
    CLOCK_TICKS,
    PROXY_LOCATION,
    PROXY_UPSTREAM,
    BenchError,
    Pinning,
    Tools,
    WrkResult,
    cpu_seconds,
    cpu_used,
    lua_script,
    nginx,
    say,
    wrk,
)
from loadtests.bento_server import IRIS_TAG, bento, build_iris_v1
from loadtests.yard_api import register, wait_served
from modelyard.processes import ModelyardProcess

PATHS: Final = ("direct", "gateway", "apart", "nginx")
GATEWAY_PATHS: Final = ("gateway", "apart")
PROXY_PATHS: Final = (*GATEWAY_PATHS, "nginx")
IRIS_MODEL: Final = "iris"
IRIS_BODY: Final = '{"input_series": [[5.1, 3.5, 1.4, 0.2]]}'
IRIS_APIS: Final = [{"name": "classify", "inputs": ["input_series"]}]


@dataclass(frozen=True)
class Plan:
    concurrencies: tuple[int, ...]
    duration_s: int  # one round of one path
    rounds: int  # measured rounds per path and concurrency, after one warm-up round each
    threads: int


# --- interleaved rounds ---------------------------------------------------------------------


@dataclass(frozen=True)
class Round:
    result: WrkResult
    wall_s: float
    proxy_cpu_s: float  # the proxy of the path (modelyard, or nginx and its worker)
    bentoml_cpu_s: float  # `bentoml serve` and all its workers

    def record(self) -> dict[str, float | int]:
        return {
            **self.result.summary(),
            "proxy_cpu_s": round(self.proxy_cpu_s, 3),
            "bentoml_cpu_s": round(self.bentoml_cpu_s, 3),
        }


@dataclass(frozen=True)
class Legs:
    tools: Tools
    pin: Pinning
    plan: Plan
    script: Path
    urls: dict[str, str]
    yard_pid: int
    bento_pid: int
    nginx_pid: int

    def proxy_pid(self, path: str) -> int:
        return self.nginx_pid if path == "nginx" else self.yard_pid

    def pin_servers(self, path: str = "gateway") -> dict[str, int]:
        """BentoML's processes on the server CPU, and the gateway's threads there too, or on the
        client CPU for the `apart` rounds (again each time: a worker or thread started since is
        caught too)."""
        processes, threads = self.pin.pin_tree(self.bento_pid)
        cpu = self.pin.client if path == "apart" else self.pin.server
        _, gateway_threads = self.pin.pin_tree(self.yard_pid, cpu)
        self.pin.pin_tree(self.nginx_pid)
        return {
            "bentoml_processes": processes,
            "bentoml_threads": threads,
            "gateway_threads": gateway_threads,
        }

    def cpu(self, path: str = "gateway") -> tuple[dict[int, float], dict[int, float]]:
        proxy = self.proxy_pid(path)
        return (
            cpu_seconds([proxy, *descendants(proxy)]),
            cpu_seconds([self.bento_pid, *descendants(self.bento_pid)]),
        )

    def idle(self, seconds: float) -> dict[str, float]:
        """Each side's CPU, as a share of one core, while no request is sent."""
        gateway, bentoml = self.cpu()
        started = time.monotonic()
        time.sleep(seconds)
        wall_s = time.monotonic() - started
        gateway_after, bentoml_after = self.cpu()
        return {
            "seconds": round(wall_s, 3),
            "gateway": round(cpu_used(gateway, gateway_after) / wall_s, 4),
            "bentoml": round(cpu_used(bentoml, bentoml_after) / wall_s, 4),
        }

    def run(self, path: str, connections: int) -> Round:
        self.pin_servers(path)
        gateway, bentoml = self.cpu(path)
        started = time.monotonic()
        result = wrk(
            self.tools,
            self.pin,
            self.urls[path],
            self.script,
            connections,
            self.plan.duration_s,
            self.plan.threads,
        )
        wall_s = time.monotonic() - started
        gateway_after, bentoml_after = self.cpu(path)
        return Round(
            result, wall_s, cpu_used(gateway, gateway_after), cpu_used(bentoml, bentoml_after)
        )


def interleave(legs: Legs, connections: int) -> dict[str, list[Round]]:
    """One warm-up round per path, then the measured rounds alternating the paths."""
    for path in PATHS:
        say(f"[e2e] {path} warm-up {legs.plan.duration_s} s at c{connections}")
        legs.run(path, connections)
    rounds: dict[str, list[Round]] = {path: [] for path in PATHS}
    for i in range(legs.plan.rounds):
        for path in PATHS:
            r = legs.run(path, connections)
            rounds[path].append(r)
            say(
                f"[e2e] c{connections} round {i + 1}/{legs.plan.rounds} {path}:"
                f" {r.result.rps:,.0f} req/s, p50 {r.result.p50_ms:.3f} ms,"
                f" p99 {r.result.p99_ms:.3f} ms"
            )
    return rounds


def summarise(rounds: Sequence[Round]) -> dict[str, Any]:
    """The medians of the rounds (and every round), the spread of the p50s, all requests."""
    p50s = [r.result.p50_ms for r in rounds]
    return {
        "rps": round(statistics.median(r.result.rps for r in rounds), 1),
        "p50_ms": round(statistics.median(p50s), 4),
        "p99_ms": round(statistics.median(r.result.p99_ms for r in rounds), 4),
        "requests": sum(r.result.requests for r in rounds),
        "p50_spread_ms": {"min": round(min(p50s), 4), "max": round(max(p50s), 4)},
        "rounds": [r.record() for r in rounds],
    }


def _per_request_ms(cpu_s: float, requests: int) -> float | None:
    return round(1000 * cpu_s / requests, 4) if requests else None


def _share(gateway_s: float, bentoml_s: float) -> float | None:
    total = gateway_s + bentoml_s
    return round(gateway_s / total, 4) if total > 0 else None


def cpu_figures(rounds: dict[str, list[Round]], path: str = "gateway") -> dict[str, Any]:
    """CPU per request of each side over the rounds of `path` (the same requests, the same
    instants, so a core that runs slower for a while slows both alike), the gateway's share of
    their sum and its spread over the rounds; BentoML's own over the direct rounds beside it."""
    direct, through = rounds["direct"], rounds[path]
    direct_requests = sum(r.result.requests for r in direct)
    gateway_requests = sum(r.result.requests for r in through)
    gateway_s = sum(r.proxy_cpu_s for r in through)
    bentoml_s = sum(r.bentoml_cpu_s for r in through)
    shares = [s for r in through if (s := _share(r.proxy_cpu_s, r.bentoml_cpu_s)) is not None]
    return {
        "gateway_ms_per_request": _per_request_ms(gateway_s, gateway_requests),
        "bentoml_ms_per_request": _per_request_ms(bentoml_s, gateway_requests),
        "bentoml_direct_ms_per_request": _per_request_ms(
            sum(r.bentoml_cpu_s for r in direct), direct_requests
        ),
        "gateway_idle_cpu_fraction": round(
            sum(r.proxy_cpu_s for r in direct) / sum(r.wall_s for r in direct), 4
        ),
        "gateway_share": _share(gateway_s, bentoml_s),
        "gateway_share_spread": {"min": min(shares), "max": max(shares)} if shares else None,
        "requests": {"direct": direct_requests, "gateway": gateway_requests},
    }


def bench_e2e(
    plan: Plan, tools: Tools, pin: Pinning, yard: ModelyardProcess, workdir: Path
) -> dict[str, Any]:
    say("[e2e] building (or finding) the iris bentos")
    archive = build_iris_v1()
    if yard.proc is None:
        raise BenchError("the modelyard process is not running")
    with (
        bento(pin, archive, workdir) as server,
        nginx(
            tools,
            pin,
            workdir / "nginx",
            PROXY_LOCATION,
            PROXY_UPSTREAM.format(port=server.url.rsplit(":", 1)[1]),
        ) as proxy,
    ):
        say(f"[e2e] {IRIS_TAG} ready at {server.url}, nginx in front of it at {proxy.url}")
        apis = {"endpoint": server.url, "apis": IRIS_APIS}
        version = register(yard, IRIS_MODEL, apis)
        wait_served(f"{yard.url}/models/{IRIS_MODEL}/classify", IRIS_BODY, version)
        legs = Legs(
            tools=tools,
            pin=pin,
            plan=plan,
            script=lua_script(workdir / "iris.lua", IRIS_BODY),
            urls={
                "direct": f"{server.url}/classify",
                "gateway": f"{yard.url}/models/{IRIS_MODEL}/classify",
                "apart": f"{yard.url}/models/{IRIS_MODEL}/classify",
                "nginx": f"{proxy.url}/classify",
            },
            yard_pid=yard.proc.pid,
            bento_pid=server.pid,
            nginx_pid=proxy.pid,
        )
        pinned = legs.pin_servers()
        say(f"[e2e] pinned to CPU {pin.server}: {pinned}")
        idle = legs.idle(plan.duration_s)
        say(f"[e2e] CPU while idle, as a share of one core: {idle}")
        measured = {f"c{c}": interleave(legs, c) for c in plan.concurrencies}
    report: dict[str, Any] = {"model": IRIS_TAG, "body": IRIS_BODY}
    for path in PATHS:
        report[path] = {c: summarise(rounds[path]) for c, rounds in measured.items()}
    added: dict[str, dict[str, float]] = {path: {} for path in PROXY_PATHS}
    share: dict[str, dict[str, float]] = {path: {} for path in PROXY_PATHS}
    for path in PROXY_PATHS:
        for c in measured:
            gw, direct = report[path][c]["p50_ms"], report["direct"][c]["p50_ms"]
            added[path][c] = round(gw - direct, 4)
            share[path][c] = round((gw - direct) / gw, 4)
    everything = {path: [r for rounds in measured.values() for r in rounds[path]] for path in PATHS}
    cpu = {c: cpu_figures(rounds) for c, rounds in measured.items()}
    cpu["all"] = cpu_figures(everything)
    cpu_apart = cpu_figures(everything, "apart")
    cpu_nginx = cpu_figures(everything, "nginx")
    return {
        **report,
        "added_p50_ms": added["gateway"],
        "gateway_share_p50": share["gateway"],
        "apart_added_p50_ms": added["apart"],
        "apart_share_p50": share["apart"],
        "gateway_share_cpu": {c: found["gateway_share"] for c, found in cpu.items()},
        "apart_share_cpu": cpu_apart["gateway_share"],
        "nginx_added_p50_ms": added["nginx"],
        "nginx_share_p50": share["nginx"],
        "nginx_share_cpu": cpu_nginx["gateway_share"],
        "cpu": {
            **cpu,
            "apart": cpu_apart,
            "nginx": cpu_nginx,
            "idle_cpu_fraction": idle,
            "clock_ticks_per_s": CLOCK_TICKS,
        },
        "method": {
            "rounds": plan.rounds,
            "round_s": plan.duration_s,
            "warmup_rounds": 1,
            "order": "per concurrency: direct, gateway, apart, nginx, direct, gateway, ...",
            "client_cpu": pin.client,
            "server_cpu": pin.server,
            "pinned": pinned,
        },
    }
