"""Gateway benchmark: the gateway side by side with direct calls and with nginx as a proxy.

Run it from the repository root (or with `make bench-gateway`):

    python -m loadtests.gateway_bench            # the full run (about three minutes)
    python -m loadtests.gateway_bench --quick    # 1 s a measurement, no BentoML: a smoke run
    python -m loadtests.gateway_bench --out /tmp/gateway-bench.json
    python -m loadtests.gateway_bench --quick --only fixed   # direct, nginx, pinned, routed
    python -m loadtests.gateway_bench --quick --only oip     # the OIP legs alone (and direct)
    python -m loadtests.gateway_bench --build python         # this tree's Python, not compiled

The gateway runs as shipped: its hot path compiled by mypyc, as the Docker image builds it
(loadtests/compiled.py makes that build of this tree, ~30 s the first time); `--build python`
measures the tree's own Python.

It needs `wrk`, `nginx` and `h2load` from Debian (`apt-get install -y wrk nginx-light
nghttp2-client`) and installs nothing itself. Everything runs on loopback, wrk (and h2load)
pinned to one CPU and every server to another (`taskset`; the modelyard process's threads with
`sched_setaffinity`), as DESIGN.md's "How to measure" says. What it measures, in one run:

1. Three paths to one fixed-response upstream (nginx, one worker, answering every POST with
   `{"predictions":[0]}`), interleaved round by round so that noise hits them alike:
   - direct:  wrk -> upstream `POST /predict`;
   - nginx:   wrk -> nginx reverse proxy (one worker, keep-alive pool of 64) -> upstream;
   - gateway: wrk -> `modelyard serve` `POST /models/bench/predict` -> upstream `/predict`;
   - gateway_canary: the same `modelyard serve`, `POST /models/bench-canary/predict`, a model
     with a 10 % canary split and sticky keys from a header that changes on every request
     (loadtests/canary_leg.py); the report's `canary_split` counts each version's requests
     from the gateway's /metrics;
   - gateway_10k: another `modelyard serve` with 10,000 more models in its route table.
   wrk POSTs a 200-byte JSON body with one thread at 1, 16 and 64 connections, 10 s each, and
   gives req/s, p50 and p99 (its `--latency` distribution). From these: the gateway's throughput
   as a share of direct and of nginx, and the latency it adds at concurrency 1.
2. The Open Inference Protocol on the gateway leg's `modelyard serve` (loadtests/oip_legs.py):
   `POST /v2/models/bench/infer` as OIP JSON and with binary tensors (wrk), and gRPC
   `ModelInfer` on its gRPC port (h2load), translated to the same fixed upstream, at the same
   concurrencies and durations; req/s, p50 and p99, the gRPC and binary throughput over the
   JSON path's, and the p50 each adds to a direct call at concurrency 1.
3. In front of BentoML (skipped by --quick; loadtests/gateway_e2e.py): the iris example's v1
   under `bentoml serve`, called directly and through the gateway at concurrency 1 and 8, in 6
   interleaved rounds of 3 s a path, BentoML and the gateway on one CPU; the gateway's share of
   the end-to-end p50, (gw - direct) / gw, on the medians of the rounds, and its share of the
   CPU per request, gateway / (gateway + BentoML).

Targets are reported as PASS/MISS; a miss does not fail the run (shared machines are noisy).
The report also carries the load tests' shared fields (loadreport.py: `kind`, `scenario`,
`summary` per path and concurrency, `budgets` from the targets, `passed`).
Exit codes: 0 it ran; 1 something failed outright (a non-2xx answer or a socket error counted by
wrk, a server that did not start, a wrong answer); 2 a tool is missing. The JSON report goes to
loadtests/results/gateway-bench.json unless `--out` says otherwise.

Modules: this one (command line, config, the fixed-response legs, the run); oip_legs.py (the
OIP legs: bodies, the gRPC check, h2load); gateway_e2e.py (in
front of BentoML) with bento_server.py; gateway_report.py (ratios, targets, the table);
yard_api.py (register, promote, wait until served); benchkit.py (what the benchmarks share:
tools, CPU pinning and CPU time, processes, nginx, wrk).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import secrets
import tempfile
import traceback
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

import httpx

from adapters.net import free_port
from loadtests import (
    benchkit,
    canary_leg,
    compiled,
    gateway_e2e,
    gateway_report,
    loadreport,
    oip_legs,
    scale_seed,
)
from loadtests.benchkit import (
    FIXED_LOCATION,
    PACKAGES,
    PROXY_LOCATION,
    PROXY_UPSTREAM,
    BenchError,
    Pinning,
    Server,
    Tools,
    WrkResult,
    find_tools,
    lua_script,
    nginx,
    say,
    tool_version,
    wrk,
)
from loadtests.yard_api import register, wait_served
from modelyard.processes import ModelyardProcess
from modelyard.settings import DB_FILE

DEFAULT_OUT: Final = Path(__file__).parent / "results" / "gateway-bench.json"
PATHS: Final = ("direct", "nginx", "gateway", "gateway_canary", "gateway_10k")
#: `--only fixed`: the fixed-response legs that compare the pinned and the routed path.
FIXED_ONLY: Final = ("direct", "nginx", "gateway", "gateway_canary")
MANY_MODELS: Final = 10_000  # the gateway_10k leg's route table: these and `bench`

FIXED_RESPONSE: Final = '{"predictions":[0]}'
MODEL: Final = "bench"
GATEWAY_PATH: Final = f"/models/{MODEL}/predict"
UPSTREAM_PATH: Final = "/predict"
BODY_BYTES: Final = 200


@dataclass(frozen=True)
class Config:
    duration_s: int  # one wrk measurement (one round of one leg)
    rounds: int  # rounds of every leg in turn per concurrency (medians: benchkit.interleaved)
    warmup_s: int  # one wrk warm-up per path before the measured rounds
    concurrencies: tuple[int, ...]
    threads: int
    e2e: bool
    e2e_duration_s: int  # one round of one path in front of BentoML
    e2e_concurrencies: tuple[int, ...]
    e2e_rounds: int  # measured rounds per path and concurrency, after one warm-up round each
    only: str = "all"  # "fixed": only the FIXED_ONLY legs; "oip": the OIP legs (and direct)
    #: the gateway's build: "compiled", as shipped (loadtests/compiled.py, mypyc), or "python"
    #: (this tree as it is, the editable install's)
    build: str = "compiled"

    @classmethod
    def full(cls) -> Config:
        return cls(
            duration_s=4,
            rounds=3,
            warmup_s=2,
            concurrencies=(1, 16, 64),
            threads=1,
            e2e=True,
            e2e_duration_s=3,
            e2e_concurrencies=(1, 8),
            e2e_rounds=6,
        )

    @classmethod
    def quick(cls) -> Config:
        return cls(
            duration_s=1,
            rounds=1,
            warmup_s=1,
            concurrencies=(1, 16, 64),
            threads=1,
            e2e=False,
            e2e_duration_s=2,
            e2e_concurrencies=(1, 8),
            e2e_rounds=2,
        )

    def e2e_plan(self) -> gateway_e2e.Plan:
        return gateway_e2e.Plan(
            self.e2e_concurrencies, self.e2e_duration_s, self.e2e_rounds, self.threads
        )


# --- the fixed-response legs ----------------------------------------------------------------


def make_body(size: int = BODY_BYTES) -> str:
    """A JSON body of exactly `size` bytes: three iris rows, an id and padding."""
    rows = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]
    base = json.dumps({"input_series": rows, "request_id": "bench-0001", "pad": ""})
    if len(base) > size:
        raise ValueError(f"a body of {size} bytes is too small for {len(base)} bytes of rows")
    return json.dumps(
        {"input_series": rows, "request_id": "bench-0001", "pad": "x" * (size - len(base))}
    )


@contextmanager
def gateway(
    workdir: Path,
    pin: Pinning,
    upstream: Server,
    checkout: Path | None = None,
    models: int = 0,
    grpc_port: int = 0,
) -> Iterator[ModelyardProcess]:
    """`modelyard serve` (no deployer) routing model `bench` to the upstream, its threads on the
    server CPU; always stopped. A failure to get there carries the server's log. `checkout`:
    run the code of another checkout of modelyard (its root is the child's working directory,
    which `python -m` puts first on the import path). `models`: that many more models in its
    route table (loadtests/scale_seed.py), seeded before it starts. `grpc_port`: its gRPC port
    (0: none)."""
    token = "bench-" + secrets.token_urlsafe(24)
    env = {"MODELYARD_DEPLOYER": "none"}
    proc = ModelyardProcess(
        "serve", workdir, token, extra_env=env, cwd=checkout, grpc_port=grpc_port
    )
    if models:
        workdir.mkdir(parents=True, exist_ok=True)
        database = f"sqlite:///{workdir / DB_FILE}"
        asyncio.run(scale_seed.seed(database, models, upstream.url))  # ready: they answer
    try:
        try:
            proc.start()
            version = register(proc, MODEL, {"endpoint": upstream.url})
            answer = wait_served(proc.url + GATEWAY_PATH, make_body(), version)
            if answer.text != FIXED_RESPONSE:
                raise BenchError(f"the gateway answered {answer.text[:200]!r}, not the upstream's")
            assert proc.proc is not None
            pin.pin_threads(proc.proc.pid)
        except (BenchError, httpx.HTTPError, RuntimeError, TimeoutError) as exc:
            raise BenchError(f"{exc}\n--- gateway log (tail) ---\n{proc.output()}") from exc
        yield proc
    finally:
        proc.stop()


def measure_rounds(
    tools: Tools,
    pin: Pinning,
    targets: dict[str, str],
    scripts: dict[str, Path],
    concurrencies: Sequence[int],
    seconds: int,
    warmup_s: int,
    threads: int,
    rounds: int = 1,
) -> dict[str, dict[str, Any]]:
    """Every path warmed up, then each concurrency over every path in turn, `rounds` times
    (`benchkit.interleaved`); each path with its wrk script."""

    def run(path: str, connections: int, duration: int) -> WrkResult:
        return wrk(tools, pin, targets[path], scripts[path], connections, duration, threads)

    return benchkit.interleaved(list(targets), run, concurrencies, seconds, warmup_s, rounds=rounds)


# --- the run --------------------------------------------------------------------------------


def machine(tools: Tools, pin: Pinning) -> dict[str, Any]:
    return {
        **benchkit.machine(),
        "wrk": tool_version([tools.wrk, "-v"]),
        "nginx": tool_version([tools.nginx, "-v"]),
        "client_cpu": pin.client,
        "server_cpu": pin.server,
    }


def oip(
    cfg: Config, tools: Tools, pin: Pinning, yard: ModelyardProcess, h2load: str, work: Path
) -> dict[str, Any]:
    """The OIP legs (loadtests/oip_legs.py) on the gateway leg's `modelyard serve`."""
    grpc_target = None
    try:
        answer_bytes = oip_legs.check_grpc(yard.grpc_target, MODEL)
        frame = work / "grpc-frame.bin"
        frame.write_bytes(oip_legs.grpc_frame(oip_legs.grpc_request(MODEL)))
        grpc_target = oip_legs.H2Target(h2load, f"http://{yard.grpc_target}", frame, answer_bytes)
    except BenchError as exc:
        say(f"[oip grpc] FAILED: {exc}")
    plan = (cfg.concurrencies, cfg.duration_s, cfg.warmup_s, cfg.threads, cfg.rounds)
    runs = oip_legs.measure(
        tools, pin, yard.url + oip_legs.infer_path(MODEL), grpc_target, work, plan
    )
    if grpc_target is None:
        runs["grpc"] = {"error": "the gRPC check call failed (see stderr)"}
    return runs


def run(cfg: Config, tools: Tools, h2load: str) -> dict[str, Any]:
    pin = Pinning.choose(tools.taskset)
    report: dict[str, Any] = {
        "machine": machine(tools, pin),
        "config": {**asdict(cfg), "body_bytes": BODY_BYTES, "fixed_response": FIXED_RESPONSE},
        "runs": {},
        "ratios": {},
        "e2e": {},
        "targets": {},
    }
    if pin.server is None:
        say("only one CPU: wrk and the servers are not pinned apart")
    with (
        tempfile.TemporaryDirectory(prefix="modelyard-gateway-bench-") as tmp,
        ExitStack() as stack,
    ):
        work = Path(tmp)
        try:
            upstream = stack.enter_context(
                nginx(tools, pin, work / "upstream", FIXED_LOCATION.format(body=FIXED_RESPONSE))
            )
            proxy = stack.enter_context(
                nginx(
                    tools,
                    pin,
                    work / "proxy",
                    PROXY_LOCATION,
                    PROXY_UPSTREAM.format(port=upstream.url.rsplit(":", 1)[1]),
                )
            )
        except Exception as exc:  # without the upstream nothing can be measured
            say(f"[nginx] FAILED:\n{traceback.format_exc()}")
            report["error"] = f"{type(exc).__name__}: {exc}"
            return report
        targets = {"direct": upstream.url + UPSTREAM_PATH, "nginx": proxy.url + UPSTREAM_PATH}
        yard: ModelyardProcess | None = None
        many: ModelyardProcess | None = None
        checkout: Path | None = None
        try:
            if cfg.build == "compiled":
                say("[gateway] the compiled build (mypyc): python -m loadtests.compiled")
                checkout = compiled.build()
            report["build"] = {"gateway": cfg.build, "checkout": str(checkout or Path.cwd())}
            say(f"[gateway] starting modelyard serve ({cfg.build})")
            grpc_port = free_port() if h2load else 0
            yard = stack.enter_context(
                gateway(work / "yard", pin, upstream, checkout=checkout, grpc_port=grpc_port)
            )
            targets["gateway"] = yard.url + GATEWAY_PATH
        except Exception as exc:  # reported verbatim; direct and nginx are still measured
            say(f"[gateway] FAILED:\n{traceback.format_exc()}")
            report["runs"]["gateway"] = {"error": f"{type(exc).__name__}: {exc}"}
            report["runs"]["gateway_canary"] = {"error": "the gateway leg failed"}
        if yard is not None and cfg.only != "oip":
            try:  # on the same `modelyard serve`: a second model, its traffic split
                say("[gateway_canary] a 10 % canary split with sticky keys, beside `bench`")
                canary_leg.setup(yard, upstream.url, make_body())
                targets["gateway_canary"] = yard.url + canary_leg.PATH
            except Exception as exc:
                say(f"[gateway_canary] FAILED:\n{traceback.format_exc()}")
                report["runs"]["gateway_canary"] = {"error": f"{type(exc).__name__}: {exc}"}
        if cfg.only == "oip":  # direct stays: the OIP legs' added p50 is over a direct call
            targets = {"direct": targets["direct"]}
            for path in ("nginx", "gateway", "gateway_canary", "gateway_10k"):
                report["runs"][path] = {"error": "not measured (--only oip)"}
        elif cfg.only == "all":
            try:
                say(f"[gateway_10k] starting modelyard serve with {MANY_MODELS:,} more models")
                many = stack.enter_context(
                    gateway(work / "many", pin, upstream, checkout=checkout, models=MANY_MODELS)
                )
                targets["gateway_10k"] = many.url + GATEWAY_PATH
            except Exception as exc:
                say(f"[gateway_10k] FAILED:\n{traceback.format_exc()}")
                report["runs"]["gateway_10k"] = {"error": f"{type(exc).__name__}: {exc}"}
        script = lua_script(work / "post.lua", make_body())
        scripts = dict.fromkeys(targets, script)
        scripts["gateway_canary"] = canary_leg.lua_script(work / "canary.lua", make_body())
        measured = measure_rounds(
            tools,
            pin,
            targets,
            scripts,
            cfg.concurrencies,
            cfg.duration_s,
            cfg.warmup_s,
            cfg.threads,
            cfg.rounds,
        )
        paths = FIXED_ONLY if cfg.only == "fixed" else PATHS
        report["runs"] = {path: report["runs"].get(path, measured.get(path)) for path in paths}
        report["ratios"] = gateway_report.ratios(report["runs"], cfg.concurrencies)
        if "gateway_canary" in targets:
            assert yard is not None
            report["canary_split"] = canary_leg.split_counts(yard.url)
        if yard is not None and cfg.only != "fixed":
            report["oip"] = oip(cfg, tools, pin, yard, h2load, work)
            report["oip_ratios"] = gateway_report.oip_ratios(
                report["oip"], report["runs"], cfg.concurrencies
            )
        report["rss_mb"] = {  # after the runs: `modelyard serve`, registry and gateway in one
            path: benchkit.rss_mb(proc.proc.pid)
            for path, proc in (("gateway", yard), ("gateway_10k", many))
            if proc is not None and proc.proc is not None
        }
        if cfg.only != "all":
            report["e2e"] = {"skipped": f"--only {cfg.only}"}
        elif not cfg.e2e:
            report["e2e"] = {"skipped": "--quick"}
        elif yard is None or "error" in report["runs"]["gateway"]:
            report["e2e"] = {"skipped": "the gateway leg failed"}
        else:
            try:
                report["e2e"] = gateway_e2e.bench_e2e(
                    cfg.e2e_plan(), tools, pin, yard, work / "e2e"
                )
            except Exception as exc:  # reported, and makes the exit code 1
                say(f"[e2e] FAILED:\n{traceback.format_exc()}")
                report["e2e"] = {"error": f"{type(exc).__name__}: {exc}"}
    report["targets"] = gateway_report.judge(report)
    return report


# --- the command line -----------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.gateway_bench",
        description=__doc__.splitlines()[0] if __doc__ else None,
    )
    parser.add_argument("--quick", action="store_true", help="1 s runs, no BentoML (smoke test)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON report path")
    parser.add_argument(
        "--only",
        choices=("all", "fixed", "oip"),
        default="all",
        help="fixed: only direct, nginx, gateway and gateway_canary (while iterating);"
        " oip: the OIP legs alone (HTTP JSON, binary, gRPC), with direct for their added p50",
    )
    parser.add_argument(
        "--build",
        choices=("compiled", "python"),
        default="compiled",
        help="the gateway as shipped, its hot path compiled by mypyc (loadtests/compiled.py,"
        " built on first use, ~30 s), or this tree's Python as it is",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    tools = find_tools()
    if isinstance(tools, list):
        packages = " ".join(PACKAGES[name] for name in tools)
        say(
            f"missing: {', '.join(tools)}. Install with:"
            f" apt-get update && apt-get install -y {packages}"
        )
        return 2
    h2load = oip_legs.find_h2load()
    if h2load is None:
        say(
            "missing: h2load (the gRPC leg's load generator). Install with:"
            f" apt-get update && apt-get install -y {oip_legs.PACKAGE}"
        )
        return 2
    cfg = Config.quick() if args.quick else Config.full()
    report = run(dataclasses.replace(cfg, only=args.only, build=args.build), tools, h2load)
    report.update(loadreport.bench_fields(report))  # the load tests' report shape too
    benchkit.write_report(args.out, report)
    print(gateway_report.table(report))
    print(f"\nreport: {args.out}")
    return 1 if gateway_report.failed(report) else 0


if __name__ == "__main__":
    raise SystemExit(main())
