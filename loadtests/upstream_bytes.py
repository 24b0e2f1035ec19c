"""Does BentoML answer the gateway's requests more slowly than the load test's direct ones? One
candidate at a time, in isolation: the iris example under `bentoml serve`, called one request at
a time from a plain blocking socket (no gateway, no locust, no event loop), with

- `gateway`: the exact bytes the gateway forwards (gateway.transport.http1.encode_request with
  the headers a passthrough call keeps, and the unsampled `traceparent` it adds), over one
  reused keep-alive connection;
- `gateway-no-trace`: the same without the `traceparent` (does it make BentoML trace?);
- `locust`: the head locust's FastHttpUser sends (User-Agent, Accept-Encoding, ...), reused;
- `gateway-8-conns`: the gateway's bytes spread round robin over 8 keep-alive connections, as a
  pool grows them under bursts of 8 (does uvicorn treat many connections differently?);
- `gateway-fresh`: the gateway's bytes on a new connection per request (what no reuse costs);
- `two-writes-nagle`: head and body in two writes with Nagle on (what write coalescing and
  TCP_NODELAY, both in the gateway already, save).

Rounds interleave the variants (in shuffled order) so that the machine's noise hits them alike;
the figures are per request: p50, p99, mean, and the ratio of each p50 to `gateway`'s.

    flock /tmp/modelyard-bench.lock python -m loadtests.upstream_bytes [--rounds 8 --per-round 150]
"""

from __future__ import annotations

import argparse
import random
import socket
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final

from gateway.transport.http1 import encode_request, head_middle
from loadtests import benchkit
from loadtests.bento_server import bento, build_iris_v1
from loadtests.budget_check import percentile

BODY: Final = b'{"input_series": [[5.1, 3.5, 1.4, 0.2]]}'
TRACEPARENT: Final = b"00-" + b"ab" * 16 + b"-" + b"cd" * 8 + b"-00"
CONNS: Final = 8
#: Nagle with the head and body apart waits for a delayed ACK (~40 ms) every request: fewer
NAGLE: Final = "two-writes-nagle"
NAGLE_PER_ROUND: Final = 15


def gateway_bytes(netloc: str, trace: bool) -> bytes:
    headers = [(b"content-type", b"application/json")]
    if trace:
        headers.append((b"traceparent", TRACEPARENT))
    return encode_request(b"POST", b"/classify", head_middle(netloc), headers, BODY)


def locust_bytes(netloc: str) -> bytes:
    head = (
        "POST /classify HTTP/1.1\r\n"
        "User-Agent: python/gevent-http-client-2.3\r\n"
        "Content-Type: application/json\r\n"
        "Accept-Encoding: gzip, deflate, br\r\n"
        f"Content-Length: {len(BODY)}\r\n"
        f"Host: {netloc}\r\n\r\n"
    )
    return head.encode() + BODY


def connect(port: int, nodelay: bool = True) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, int(nodelay))
    return s


def read_answer(s: socket.socket) -> None:
    """Read one answer with a content-length (BentoML's JSON answers have one)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise ConnectionError(head[:80].decode("latin-1"))
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(rest) < length:
        rest += s.recv(65536)


Call = Callable[[], None]


def variants(port: int) -> dict[str, tuple[Call, Call]]:
    """name -> (one request, close its connections)"""
    netloc = f"127.0.0.1:{port}"
    gw, gw_plain, lc = (
        gateway_bytes(netloc, True),
        gateway_bytes(netloc, False),
        locust_bytes(netloc),
    )
    out: dict[str, tuple[Call, Call]] = {}

    def reused(data: bytes, conns: int = 1, nodelay: bool = True, split: bool = False) -> None:
        socks = [connect(port, nodelay) for _ in range(conns)]
        turn = [0]
        head_len = len(data) - len(BODY)

        def call() -> None:
            s = socks[turn[0] % conns]
            turn[0] += 1
            if split:
                s.sendall(data[:head_len])
                s.sendall(data[head_len:])
            else:
                s.sendall(data)
            read_answer(s)

        def close() -> None:
            for s in socks:
                s.close()

        return call, close  # type: ignore[return-value]

    def fresh() -> None:
        with connect(port) as s:
            s.sendall(gw)
            read_answer(s)

    out["gateway"] = reused(gw)  # type: ignore[assignment]
    out["gateway-no-trace"] = reused(gw_plain)  # type: ignore[assignment]
    out["locust"] = reused(lc)  # type: ignore[assignment]
    out[f"gateway-{CONNS}-conns"] = reused(gw, conns=CONNS)  # type: ignore[assignment]
    out["gateway-fresh"] = (fresh, lambda: None)
    out[NAGLE] = reused(gw, nodelay=False, split=True)  # type: ignore[assignment]
    return out


def run(port: int, rounds: int, per_round: int, seed: int) -> dict[str, list[float]]:
    calls = variants(port)
    times: dict[str, list[float]] = {name: [] for name in calls}
    rng = random.Random(seed)
    for call, _ in calls.values():  # warm every connection and BentoML's first calls
        for _ in range(20):
            call()
    for _ in range(rounds):
        order = list(calls)
        rng.shuffle(order)
        for name in order:
            call = calls[name][0]
            for _ in range(NAGLE_PER_ROUND if name == NAGLE else per_round):
                t = time.perf_counter()
                call()
                times[name].append(1000 * (time.perf_counter() - t))
    for _, close in calls.values():
        close()
    return times


def table(times: dict[str, list[float]]) -> str:
    base = percentile(sorted(times["gateway"]), 50)
    lines = [f"{'variant':<20}{'n':>6}{'p50':>8}{'p99':>8}{'mean':>8}{'p50/gw':>8}  ms"]
    for name, ms in times.items():
        o = sorted(ms)
        p50 = percentile(o, 50)
        lines.append(
            f"{name:<20}{len(o):>6}{p50:>8.3f}{percentile(o, 99):>8.3f}"
            f"{sum(o) / len(o):>8.3f}{p50 / base:>8.2f}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtests.upstream_bytes")
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--per-round", type=int, default=150)
    p.add_argument("--seed", type=int, default=23)
    args = p.parse_args(argv)
    print(f"load average at the start: {benchkit.machine()['loadavg_1m_at_start']}")
    with tempfile.TemporaryDirectory(prefix="upstream-bytes-") as tmp:
        pin = benchkit.Pinning("taskset", None, None)  # placed as in `modelyard serve`: anywhere
        with bento(pin, build_iris_v1(), Path(tmp)) as server:
            port = int(server.url.rsplit(":", 1)[1])
            times = run(port, args.rounds, args.per_round, args.seed)
    print(table(times))
    print(f"load average at the end: {benchkit.machine()['loadavg_1m_at_start']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
