"""Instructions per request that tracing adds, counted (not timed): the gateway's own request
path (`Gateway.handle` over a fixed-answer transport, no socket) with tracing off, on but
unsampled (ratio 0), and sampled (ratio 1, the records handed to a sink that keeps nothing),
under callgrind. Deterministic, so it needs neither the benchmark lock nor a quiet machine.

    python -m loadtests.tracing_instr              # callgrind, every mode; prints a table
    python -m loadtests.tracing_instr --run MODE N # one run of N requests (what callgrind runs)

Each mode runs twice (a few and many requests) and the difference divided by the extra
requests is the per-request cost: start-up (imports, the provider) cancels out. Needs
valgrind; exit 2 without it.

Then the exporting child's instructions a span (`--modes child`, in the default run too):
`python -m adapters.span_export` under callgrind, fed batches of 1,024 of the records the
sampled mode makes, as the gateway sends them (`span_export.wire`), exporting OTLP/HTTP to a
no-op receiver in this process; 2 and 12 batches, the difference over 10,240 spans.
"""

from __future__ import annotations

import argparse
import asyncio
import marshal
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Final

from contract.routes import ApiSpec, ModelRoute, RouteTable, VersionRoute
from contract.spans import SpanRecord
from contract.traffic import TrafficPolicy
from gateway.follow import RouteFollower
from gateway.forward import Forwarder
from gateway.front import Gateway
from gateway.metrics import GatewayMetrics
from gateway.resilience import Resilient
from gateway.shadow import ShadowQueue
from gateway.traced import TracingHooks
from gateway.transport import MockTransport, UpstreamRequest, UpstreamResponse
from gateway.transport.base import Headers

MODES: Final = ("off", "unsampled", "sampled")
CHILD: Final = "child"
CHILD_BATCHES: Final = (2, 12)  # batches of 1,024 records for the exporting child
VALGRIND: Final = shutil.which("valgrind")
FEW: Final = 500
MANY: Final = 3500
V1 = VersionRoute(1, "http://127.0.0.1:9", "bentoml", [ApiSpec("predict", ["x"])])
ANSWER = UpstreamResponse(200, [(b"content-type", b"application/json")], b'{"y":[0,1,2]}')
HEADERS: Headers = [  # what wrk sends in tracing_bench
    (b"host", b"127.0.0.1:8000"),
    (b"content-type", b"application/json"),
    (b"content-length", b"200"),
]
BODY = b'{"input_series": [[5.1, 3.5, 1.4, 0.2]], "request_id": "bench-0001"}'


class _Keep:
    """A sink that drops every record (the request path's cost only)."""

    dropped = 0

    def emit(self, record: SpanRecord) -> None:
        return None

    def close(self) -> None:
        return None


def _gateway(mode: str) -> Gateway:
    from adapters.telemetry import setup_tracing

    hooks = None
    if mode != "off":
        ratio = "1.0" if mode == "sampled" else "0.0"
        env = {"OTEL_TRACES_SAMPLER_ARG": ratio, "OTEL_TRACES_EXPORTER": "none"}
        tracing = setup_tracing("gateway", env, "on")
        assert tracing is not None
        keep = _Keep()
        object.__setattr__(tracing, "spans", keep)
        object.__setattr__(tracing, "emit", keep.emit)
        hooks = TracingHooks(tracing)

    def answer(request: UpstreamRequest) -> UpstreamResponse:
        return ANSWER

    transport = MockTransport(answer)
    metrics = GatewayMetrics()
    follower = RouteFollower(source=None)  # type: ignore[arg-type]  # never started here
    route = ModelRoute("bench", 1, {1: V1}, {}, TrafficPolicy())
    follower.table = RouteTable(1, {"bench": route})
    forwarder = Forwarder(
        Resilient(transport, max_inflight=64), metrics, ShadowQueue(transport, metrics)
    )
    gateway = Gateway(follower, forwarder, hooks=hooks)
    transport.requests = _NoList()
    return gateway


class _NoList(list[UpstreamRequest]):
    def append(self, item: UpstreamRequest) -> None:
        return None


async def _drive(gateway: Gateway, n: int) -> None:
    handle = gateway.handle
    for _ in range(n):
        reply = await handle("POST", "/models/bench/predict", HEADERS, BODY)
        assert reply.status == 200, reply.body


def _run(mode: str, n: int) -> None:
    gateway = _gateway(mode)
    asyncio.run(_drive(gateway, n))


def _records(n: int) -> list[SpanRecord]:
    """The records `n` sampled requests make (two spans each)."""
    made: list[SpanRecord] = []
    gateway = _gateway("sampled")
    assert isinstance(gateway.hooks, TracingHooks)
    object.__setattr__(gateway.hooks.tracing, "emit", made.append)
    asyncio.run(_drive(gateway, n))
    return made


def _child_per_span(out: Path) -> float:
    from adapters.span_export import wire
    from loadtests.tracing_bench import sink

    assert VALGRIND is not None
    records = _records(512 * max(CHILD_BATCHES))
    counts: dict[int, int] = {}
    with sink() as (url, _received):
        for batches in CHILD_BATCHES:
            fed = out / f"wire.{batches}"
            fed.write_bytes(
                b"".join(wire(records[at : at + 1024]) for at in range(0, batches * 1024, 1024))
            )
            with fed.open("rb") as stdin:
                counts[batches] = _callgrind(
                    ["adapters.span_export", "otlp", "modelyard.gateway", "1024"],
                    out / f"cg.child.{batches}",
                    stdin=stdin,
                    env={
                        "OTEL_EXPORTER_OTLP_ENDPOINT": url,
                        "MODELYARD_SPAN_RESOURCE": marshal.dumps({"service.name": "x"}).hex(),
                    },
                )
    few, many = CHILD_BATCHES
    return (counts[many] - counts[few]) / ((many - few) * 1024)


def _instructions(mode: str, n: int, out: Path) -> int:
    return _callgrind(["loadtests.tracing_instr", "--run", mode, str(n)], out / f"cg.{mode}.{n}")


def _callgrind(
    module_args: list[str],
    target: Path,
    *,
    stdin: IO[bytes] | None = None,
    env: dict[str, str] | None = None,
) -> int:
    """Instructions of `python -m <module_args>` under callgrind (its summary line), with
    `PYTHONHASHSEED=0` and `env` added to the environment."""
    assert VALGRIND is not None
    subprocess.run(
        [
            VALGRIND,
            "--tool=callgrind",
            f"--callgrind-out-file={target}",
            sys.executable,
            "-m",
            *module_args,
        ],
        stdin=stdin,
        check=True,
        capture_output=True,
        env={**os.environ, "PYTHONHASHSEED": "0", **(env or {})},
    )
    summary = re.search(rb"^summary: (\d+)", target.read_bytes(), re.M)
    assert summary is not None
    return int(summary.group(1))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtests.tracing_instr")
    parser.add_argument("--run", nargs=2, metavar=("MODE", "N"))
    parser.add_argument("--keep", type=Path, help="keep the callgrind files in this directory")
    parser.add_argument("--modes", nargs="+", choices=[*MODES, CHILD], default=[*MODES, CHILD])
    args = parser.parse_args(argv)
    if args.run:
        _run(args.run[0], int(args.run[1]))
        return 0
    if VALGRIND is None:
        print("needs valgrind (apt-get install -y valgrind)")
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        out = args.keep or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        per: dict[str, float] = {}
        for mode in args.modes:
            if mode != CHILD:
                few, many = _instructions(mode, FEW, out), _instructions(mode, MANY, out)
                per[mode] = (many - few) / (MANY - FEW)
        child = _child_per_span(out) if CHILD in args.modes else None
    print("| tracing | instructions per request | vs off |")
    print("|---|---|---|")
    for mode, value in per.items():
        extra = f"+{value - per['off']:,.0f}" if "off" in per else "-"
        print(f"| {mode} | {value:,.0f} | {extra} |")
    if child is not None:
        print(f"\nexporting child: {child:,.0f} instructions a span")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
