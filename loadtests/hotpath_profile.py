"""The gateway's hot path per request, with no sockets: a tool for deterministic measures.

    python -m loadtests.hotpath_profile --leg pinned --requests 2000
    python -m loadtests.hotpath_profile --leg routed --profile      # cProfile: where it goes
    python -m loadtests.hotpath_profile --callgrind                 # instructions per request

It runs the real code from the client's bytes to the client's answer: the fast HTTP protocol
(gateway/server/fast_http.py, httptools), `Gateway.start` (once the pool is warm: the callback
lane, gateway/lane.py), routing, metrics, the resilient transport's decisions and the upstream
pool with its HTTP/1.1 connection (gateway/transport/pool.py and http1.py: request encoding,
response parsing). Only the two sockets are fakes: the client's
transport feeds the next request when an answer is written, and the upstream's transport
answers every request with a fixed 200 on the next loop turn (uvloop, as deployed), so what is
counted is the gateway's own work.

Legs (the same model `bench`, its stable version 1 and version 2 at the same upstream):
- `pinned`: no traffic policy, every request to the stable version;
- `routed`: a 10 % canary split to version 2 with a sticky key from the `x-user` header, the
  keys cycling through 1,000 users (`user-0` ... `user-999`, loadtests/canary_leg.py's `KEYS`),
  as loadtests/gateway_bench.py's `gateway_canary` leg sends them;
- `routed-fresh`: the same split, but a key never seen before on every request (`fresh-<n>`,
  n counting over the warm-up and the measured requests): a client whose keys never repeat,
  in its steady state: the gateway's memo of buckets (gateway/buckets.py) made small enough
  (`FRESH_MEMO`) to be full from the warm-up on, so every new key replaces one, as it does
  once a real gateway's 65,536 are taken.
- `traced0`, `traced1`, `traced100`: `pinned` with tracing on (gateway.traced), the ratio
  sampler at 0, 1 and 100 %, the finished spans' records handed to a sink that keeps nothing
  (`OTEL_TRACES_EXPORTER=none`; `run`'s `emit` takes them instead). What the exporting child
  does with them is loadtests/tracing_instr.py's. The random bytes of the traceparents and
  span ids come from a generator seeded the same on every run, so the requests sampled at 1 %
  are the same ones each time; the warm-up (1,024) and the measured requests (3,072) are whole
  blocks of traceparents (gateway.traced makes 1,024 at a time).

`--callgrind` runs each leg under `valgrind --tool=callgrind --toggle-collect=uv_run` (only
the event loop's work is counted: start-up and imports are not) twice, with the warm-up alone
and with the warm-up and the measured requests, and divides the difference by the measured
requests: the steady state, once the warm-up (1,024 requests: every user of `routed` seen
once) has filled what the gateway remembers. The figure is repeatable whatever the
neighbours do (no lock needed; `PYTHONHASHSEED=0`). The requests' bytes are made before the
loop runs, so they are not counted. (Until 2026-12-07 the figure was one run's count over
warm-up and requests together, 100 + 3,000, the requests' formatting counted, and a fresh key
a request on `routed`: on the same code pinned 125,880 / routed 139,962 there, 121,832 /
135,022 here with 1,000 + 3,000.) `--profile` prints cProfile's top functions by own time,
and the calls per request.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import os
import pstats
import random
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final, cast
from unittest import mock

import uvloop
from uvicorn.config import Config
from uvicorn.server import ServerState

from contract.routes import ModelRoute, RouteTable, VersionRoute
from contract.spans import SpanRecord
from contract.traffic import Split, StickyKey, TrafficPolicy
from gateway.buckets import StickyBuckets
from gateway.follow import RouteFollower
from gateway.forward import Forwarder
from gateway.front import Gateway
from gateway.hooks import Hooks
from gateway.metrics import GatewayMetrics
from gateway.resilience import Resilient
from gateway.server.fast_http import FastHandler, protocol_class
from gateway.shadow import ShadowQueue
from gateway.traced import TracingHooks
from gateway.transport.pool import Http1Transport
from loadtests.canary_leg import KEYS

LEGS: Final = ("pinned", "routed", "routed-fresh", "traced0", "traced1", "traced100")
ROUTED: Final = ("routed", "routed-fresh")
FRESH_MEMO: Final = 500  # `routed-fresh`'s memo of buckets: full after half the warm-up
#: The tracing legs' sampler ratio (`OTEL_TRACES_SAMPLER_ARG`).
RATIOS: Final = {"traced0": "0", "traced1": "0.01", "traced100": "1"}
SEED: Final = 23  # the tracing legs' random bytes
#: Whole blocks of traceparents (a tracing leg), and every user of `routed` seen in the warm-up.
WARMUP: Final = 1024
REQUESTS: Final = 3072
UPSTREAM: Final = "http://127.0.0.1:9"  # never connected: the loop below fakes the socket
STICKY_HEADER: Final = "x-user"
BODY: Final = b'{"input_series":[[5.1,3.5,1.4,0.2]],"request_id":"bench-0001"}'
ANSWER: Final = (
    b"HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: Mon, 07 Dec 2026 07:00:00 GMT\r\n"
    b"Content-Type: application/json\r\nContent-Length: 19\r\nConnection: keep-alive\r\n\r\n"
    b'{"predictions":[0]}'
)


def route_table(leg: str) -> RouteTable:
    versions = {v: VersionRoute(v, UPSTREAM, "bentoml") for v in (1, 2)}
    policy = TrafficPolicy()
    if leg in ROUTED:
        policy = TrafficPolicy(
            splits=[Split(version=2, weight=10.0)], sticky=StickyKey(header=STICKY_HEADER)
        )
    route = ModelRoute("bench", 1, versions, {}, policy)
    return RouteTable(1, {"bench": route})


def request_bytes(leg: str, n: int) -> bytes:
    """What wrk sends (its Lua script's headers) as the `n`th request: on `routed` the sticky
    key of user n mod `KEYS`, on `routed-fresh` a key of its own."""
    key = b""
    if leg == "routed":
        key = b"x-user: user-%d\r\n" % (n % KEYS)
    elif leg == "routed-fresh":
        key = b"x-user: fresh-%d\r\n" % n
    return (
        b"POST /models/bench/predict HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n"
        b"Content-Type: application/json\r\n%bContent-Length: %d\r\n\r\n%b" % (key, len(BODY), BODY)
    )


class _Follower:
    """What the gateway reads of a `RouteFollower`: the table."""

    def __init__(self, table: RouteTable) -> None:
        self.table: RouteTable | None = table
        self.registry_up = True


class _UpstreamSocket:
    """The upstream's side of a connection: every request written is answered on the next
    loop turn with `ANSWER`."""

    def __init__(self, loop: asyncio.AbstractEventLoop, protocol: asyncio.Protocol) -> None:
        self.loop = loop
        self.protocol = protocol

    def write(self, data: bytes) -> None:
        self.loop.call_soon(self.protocol.data_received, ANSWER)

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def close(self) -> None:
        self.loop.call_soon(self.protocol.connection_lost, None)

    abort = close


class FakeNetLoop(uvloop.Loop):
    """uvloop, with connections that reach `_UpstreamSocket` instead of the network."""

    async def create_connection(  # type: ignore[override]
        self, factory: Callable[[], asyncio.Protocol], host: str, port: int
    ) -> tuple[_UpstreamSocket, asyncio.Protocol]:
        protocol = factory()
        sock = _UpstreamSocket(self, protocol)
        protocol.connection_made(cast(asyncio.Transport, sock))
        return sock, protocol


class _Client:
    """The client's side: sends `total` requests one after the other (concurrency 1), the next
    when the answer to the last is written; `done` when all are answered."""

    def __init__(self, loop: asyncio.AbstractEventLoop, requests: list[bytes]) -> None:
        self.loop = loop
        self.requests = requests
        self.sent = 0
        self.answers = 0
        self.last = b""
        self.protocol: asyncio.Protocol | None = None
        self.done: asyncio.Future[None] = loop.create_future()

    async def exchange(self, protocol: Any, profile: cProfile.Profile | None) -> bytes:
        """Connect `protocol` to this client, send every request (profiled when `profile` is
        given), disconnect; the last answer."""
        self.protocol = protocol
        protocol.connection_made(cast(asyncio.Transport, self))
        if profile is not None:
            profile.enable()
        self.next()
        await self.done
        if profile is not None:
            profile.disable()
        protocol.connection_lost(None)
        return self.last

    def next(self) -> None:
        assert self.protocol is not None
        data = self.requests[self.sent % len(self.requests)]
        self.sent += 1
        self.protocol.data_received(data)

    def write(self, data: bytes) -> None:
        self.answers += 1
        self.last = data
        if self.answers >= len(self.requests):
            self.done.set_result(None)
        else:
            self.loop.call_soon(self.next)

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        pass


class _Paths:
    def __init__(self, handler: FastHandler) -> None:
        self.handler = handler

    def handler_for(self, method: str, path: str) -> FastHandler | None:
        return self.handler


class _Drawn:
    """`os.urandom`'s stand-in: `size` bytes drawn from a generator seeded with `SEED` before
    the loop runs, handed out in turn. Like the real one (a `getrandom` system call, which
    callgrind does not see), it costs a slice; `random.randbytes` in its place would add a
    big integer's making and conversion (about 1,400 instructions a request)."""

    def __init__(self, size: int) -> None:
        self.data = random.Random(SEED).randbytes(size)
        self.at = 0

    def __call__(self, size: int) -> bytes:
        at = self.at
        self.at = end = at + size
        if end > len(self.data):
            raise RuntimeError("the harness drew too few random bytes")
        return self.data[at:end]


def tracing_hooks(leg: str, emit: Callable[[SpanRecord], None] | None = None) -> Hooks | None:
    """The hooks of a tracing leg (None for the others): tracing set up as `modelyard serve`
    does, at the leg's ratio, with no exporter (records dropped), or `emit` given each record."""
    ratio = RATIOS.get(leg)
    if ratio is None:
        return None
    from adapters.telemetry import setup_tracing

    env = {"OTEL_TRACES_SAMPLER_ARG": ratio, "OTEL_TRACES_EXPORTER": "none"}
    tracing = setup_tracing("gateway", env, "on")
    assert tracing is not None
    if emit is not None:
        object.__setattr__(tracing, "emit", emit)
    return TracingHooks(tracing)


async def drive(
    leg: str,
    rounds: Sequence[list[bytes]],
    profile: cProfile.Profile | None,
    hooks: Hooks | None = None,
) -> bytes:
    """The warm-up's requests, then the measured ones (profiled with `profile`), each round on
    a connection of its own, through a gateway with `hooks`; the last answer."""
    loop = asyncio.get_running_loop()
    transport = Http1Transport()
    metrics = GatewayMetrics()
    follower = cast(RouteFollower, _Follower(route_table(leg)))
    # `routed-fresh` in the steady state of keys that never repeat: the gateway's memo of
    # buckets full from the warm-up on, every new key replacing one
    buckets = StickyBuckets(capacity=FRESH_MEMO) if leg == "routed-fresh" else None
    shadow = ShadowQueue(transport, metrics)
    forwarder = Forwarder(Resilient(transport), metrics, shadow, buckets=buckets)
    gateway = Gateway(follower, forwarder, hooks=hooks)
    config = Config(app="never:loaded", access_log=False)  # the protocol reads its settings
    state = ServerState()
    cls = protocol_class(_Paths(gateway))
    last = b""
    for sent, prof in zip(rounds, (None, profile), strict=True):
        if not sent:
            continue
        client = _Client(loop, sent)
        protocol = cls(config, state, {}, _loop=loop)  # type: ignore[call-arg]
        last = await client.exchange(protocol, prof)
    if not last.startswith(b"HTTP/1.1 200 "):
        raise SystemExit(f"the gateway answered {last[:300]!r}")
    await transport.close()
    return last


def run(
    leg: str,
    requests: int,
    warmup: int,
    profile: cProfile.Profile | None = None,
    emit: Callable[[SpanRecord], None] | None = None,
) -> bytes:
    """Drive one leg (`drive`) on a `FakeNetLoop`; the last answer. Random bytes (the
    traceparents' `os.urandom`, span and trace ids' `random`) come from generators seeded with
    `SEED` meanwhile: the same requests sampled, the same work, on every run. Tracing is set
    up before the loop runs (its imports are not counted)."""
    hooks = tracing_hooks(leg, emit)
    loop = FakeNetLoop()
    gc.freeze()  # as modelyard.app does once it is set up: a full collection skips all that
    random.seed(SEED)
    try:  # uv_run starts in run_until_complete: the requests are made before it, not counted
        rounds = [
            [request_bytes(leg, n) for n in range(warmup)],
            [request_bytes(leg, n) for n in range(warmup, warmup + requests)],
        ]
        with mock.patch("os.urandom", _Drawn(64 * (requests + warmup + 2048))):
            return loop.run_until_complete(drive(leg, rounds, profile, hooks))
    finally:
        loop.close()


def callgrind_collected(
    leg: str, requests: int, warmup: int, out: Path, module: str = "loadtests.hotpath_profile"
) -> int:
    """Instructions of one run of a leg (of `module`'s harness) under callgrind, counted only
    inside uvloop's `uv_run` (the event loop: start-up and imports are left out)."""
    command = [
        "valgrind",
        "--tool=callgrind",
        "--toggle-collect=uv_run",
        f"--callgrind-out-file={out}",
        sys.executable,
        "-m",
        module,
        "--leg",
        leg,
        "--requests",
        str(requests),
        "--warmup",
        str(warmup),
    ]
    env = {**os.environ, "PYTHONHASHSEED": "0"}  # the same dict probing on every run
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"callgrind failed:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def callgrind_per_request(
    leg: str,
    requests: int,
    warmup: int,
    out: Path,
    module: str = "loadtests.hotpath_profile",
    steady: bool = False,
) -> float:
    """Instructions per request of one leg under callgrind: over every request run, or
    (`steady`) over the measured requests only, less a run of the warm-up alone."""
    total = callgrind_collected(leg, requests, warmup, out, module)
    if not steady:
        return total / (requests + warmup)
    return (total - callgrind_collected(leg, 0, warmup, out, module)) / requests


def per_request(
    legs: Sequence[str],
    requests: int,
    warmup: int,
    module: str = "loadtests.hotpath_profile",
    steady: bool = False,
) -> dict[str, float]:
    """Instructions per request of each leg (`callgrind_per_request`) of `module`'s harness."""
    with tempfile.TemporaryDirectory(prefix="hotpath-") as tmp:
        return {
            leg: callgrind_per_request(
                leg, requests, warmup, Path(tmp) / f"{leg}.out", module, steady
            )
            for leg in legs
        }


Run = Callable[[str, int, int, "cProfile.Profile | None"], bytes]


def command(
    argv: Sequence[str] | None,
    *,
    module: str,
    legs: Sequence[str],
    default: str,
    requests: int,
    run: Run,
    unit: str = "request",
    warmup: int = 100,
    steady: bool = False,
) -> int:
    """The command line of a harness like this one (`module`, whose `run` drives one leg):
    `--callgrind` (instructions per `unit` of every leg, `steady`: the measured ones less the
    warm-up's, and each leg's ratio to the first), `--profile` (cProfile's view of one leg),
    or a plain run."""
    parser = argparse.ArgumentParser(prog=f"python -m {module}")
    parser.add_argument("--leg", choices=legs, default=default)
    parser.add_argument("--requests", type=int, default=requests)
    parser.add_argument("--warmup", type=int, default=warmup)
    parser.add_argument("--profile", action="store_true", help=f"cProfile the measured {unit}s")
    parser.add_argument(
        "--callgrind", action="store_true", help=f"instructions per {unit} of every leg"
    )
    parser.add_argument(
        "--legs", nargs="+", choices=legs, default=legs, help="--callgrind's legs (all)"
    )
    args = parser.parse_args(argv)
    if args.callgrind:
        figures = per_request(args.legs, args.requests, args.warmup, module, steady)
        for leg, figure in figures.items():
            print(f"{leg}: {figure:,.0f} instructions per {unit}")
        first = args.legs[0]
        for leg in args.legs[1:]:
            print(f"{leg}/{first}: {figures[leg] / figures[first]:.3f}", end="")
            print(f" ({figures[leg] - figures[first]:+,.0f})")
        return 0
    if args.profile:
        profile = cProfile.Profile()
        run(args.leg, args.requests, args.warmup, profile)
        stats = pstats.Stats(profile)
        calls = sum(s[1] for s in stats.stats.values())  # type: ignore[attr-defined]
        print(f"{args.leg}: {calls / args.requests:.1f} function calls per {unit}")
        stats.sort_stats("tottime").print_stats(30)
        return 0
    run(args.leg, args.requests, args.warmup, None)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return command(
        argv,
        module="loadtests.hotpath_profile",
        legs=LEGS,
        default="routed",
        requests=REQUESTS,
        run=run,
        warmup=WARMUP,
        steady=True,
    )


if __name__ == "__main__":
    raise SystemExit(main())
