"""The OIP inference call per request, HTTP JSON and gRPC, with no sockets: instructions per call.

    python -m loadtests.oip_hotpath --callgrind                 # both legs, instructions/call
    python -m loadtests.oip_hotpath --leg grpc --profile        # cProfile: where it goes

The sibling of loadtests/hotpath_profile.py (same fakes: uvloop, the client's transport feeding
the next request when an answer is written, the upstream's answering `{"predictions":[0]}` on
the next loop turn) for the two OIP legs of loadtests/oip_legs.py, with the same tensor (FP32
[3, 4], iris rows) to the same BentoML-protocol version:
- `oip_json`: ``POST /v2/models/bench/infer`` with the OIP JSON body wrk sends, through the
  fast HTTP protocol and `Gateway.start` (the OIP front's coroutine, in one Task);
- `grpc`: `ModelInfer` as h2load sends it: one HTTP/2 connection (the preface and SETTINGS
  once), then per call a HEADERS frame (HPACK with its dynamic table, as nghttp2 encodes a
  repeated request) and a DATA frame ending the stream, `raw_input_contents` holding the
  tensor, through `H2Connection`, `GrpcCalls` and `InferenceService`.

`--callgrind` counts instructions inside `uv_run` only (start-up and imports left out) and
divides by the calls run; repeatable whatever the neighbours do (no lock; `PYTHONHASHSEED=0`).
"""

from __future__ import annotations

import asyncio
import cProfile
from collections.abc import Sequence
from typing import Any, Final, cast

import hpack
from uvicorn.config import Config
from uvicorn.server import ServerState

from contract.routes import ModelRoute, RouteTable, VersionRoute
from contract.traffic import TrafficPolicy
from gateway.follow import RouteFollower
from gateway.forward import Forwarder
from gateway.front import Gateway
from gateway.grpc import h2frames as f
from gateway.grpc.calls import GrpcCalls
from gateway.grpc.h2conn import H2Connection
from gateway.grpc.service import InferenceService
from gateway.metrics import GatewayMetrics
from gateway.resilience import Resilient
from gateway.server.fast_http import protocol_class
from gateway.shadow import ShadowQueue
from gateway.transport.pool import Http1Transport
from loadtests import hotpath_profile as hp
from loadtests import oip_legs

LEGS: Final = ("oip_json", "grpc")
MODEL: Final = "bench"


def route_table() -> RouteTable:
    versions = {1: VersionRoute(1, hp.UPSTREAM, "bentoml")}
    return RouteTable(1, {MODEL: ModelRoute(MODEL, 1, versions, {}, TrafficPolicy())})


def http_request() -> bytes:
    body = oip_legs.json_body().encode()
    return (
        b"POST /v2/models/%b/infer HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%b"
        % (MODEL.encode(), len(body), body)
    )


def grpc_requests(count: int) -> list[bytes]:
    """The bytes h2load sends per call (the first with the preface and SETTINGS), stream ids
    1, 3, 5, ..., the headers HPACK-encoded by one encoder (its dynamic table as h2load's)."""
    message = oip_legs.grpc_frame(oip_legs.grpc_request(MODEL))
    encoder = hpack.Encoder()
    headers = [
        (":method", "POST"),
        (":path", oip_legs.GRPC_METHOD),
        (":scheme", "http"),
        (":authority", "127.0.0.1:50051"),
        ("user-agent", "h2load nghttp2/1.52.0"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
        ("content-length", str(len(message))),
    ]
    out = []
    for n in range(count):
        ident = 2 * n + 1
        block = encoder.encode(headers)
        call = f.frame(f.HEADERS, f.END_HEADERS, ident, block) + f.frame(
            f.DATA, f.END_STREAM, ident, message
        )
        if n == 0:
            # h2load opens the connection's window at the start (nghttp2: to 2^30 - 1)
            opening = f.settings([]) + f.window_update(0, (1 << 30) - 1 - f.DEFAULT_WINDOW)
            call = f.PREFACE + opening + f.SETTINGS_ACK + call
        out.append(call)
    return out


class _GrpcClient(hp._Client):
    """h2load's side: an answer is the write holding a call's trailers (grpc-status)."""

    def write(self, data: bytes) -> None:
        if b"grpc-status" in data:
            super().write(data)


def _gateway() -> tuple[Gateway, Http1Transport]:
    transport = Http1Transport()
    metrics = GatewayMetrics()
    follower = cast(RouteFollower, hp._Follower(route_table()))
    forwarder = Forwarder(Resilient(transport), metrics, ShadowQueue(transport, metrics))
    return Gateway(follower, forwarder), transport


def calls_of(leg: str, count: int) -> list[bytes]:
    """What the client sends, call by call (made before the loop runs: not counted)."""
    return grpc_requests(count) if leg == "grpc" else [http_request()] * count


async def drive(leg: str, rounds: list[list[bytes]], profile: cProfile.Profile | None) -> bytes:
    """The warm-up's calls, then the measured ones (profiled with `profile`); the last
    answer."""
    loop = asyncio.get_running_loop()
    gateway, transport = _gateway()
    last = b""
    for sent, prof in zip(rounds, (None, profile), strict=True):
        if not sent:
            continue
        protocol: Any
        if leg == "grpc":
            client: hp._Client = _GrpcClient(loop, sent)
            calls = GrpcCalls(InferenceService(gateway, "modelyard", "0"), 1 << 20)
            protocol = H2Connection(calls, max_body=(1 << 20) + 5)
        else:
            client = hp._Client(loop, sent)
            cls = protocol_class(hp._Paths(gateway))
            config = Config(app="never:loaded", access_log=False)
            protocol = cls(config, ServerState(), {}, _loop=loop)  # type: ignore[call-arg]
        last = await client.exchange(protocol, prof)
    ok = b"grpc-status\x010" in last if leg == "grpc" else last.startswith(b"HTTP/1.1 200 ")
    if not ok:
        raise SystemExit(f"the gateway answered {last[:300]!r}")
    await transport.close()
    return last


def run(leg: str, requests: int, warmup: int, profile: cProfile.Profile | None = None) -> bytes:
    loop = hp.FakeNetLoop()
    try:  # uv_run starts in run_until_complete: the requests are made before it
        rounds = [calls_of(leg, warmup), calls_of(leg, requests)]
        return loop.run_until_complete(drive(leg, rounds, profile))
    finally:
        loop.close()


def main(argv: Sequence[str] | None = None) -> int:
    return hp.command(
        argv,
        module="loadtests.oip_hotpath",
        legs=LEGS,
        default="grpc",
        requests=2000,
        run=run,
        unit="call",
    )


if __name__ == "__main__":
    raise SystemExit(main())
