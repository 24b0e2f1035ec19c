"""grpcio's `grpc.aio` server against the gateway's own HTTP/2 server, each answering
`ModelInfer` with a fixed message and doing nothing else: what the server alone costs.

    python -m loadtests.grpc_servers [--rounds 3] [--seconds 3] [--connections 16]

Each server runs in a process of its own on CPU 0 (uvloop, as the gateway runs), h2load on CPU
1 with one stream per connection (as loadtests/oip_legs.py), the two servers in turn round by
round; prints req/s per round and the median ratio. Needs h2load (nghttp2-client) and two CPUs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Final

from adapters.net import free_port
from loadtests import oip_legs

ANSWER: Final = b"\n\x05bench\x12\x011\x1a\x01x"  # a ModelInferResponse: name, version, id
SERVERS: Final = ("grpc_aio", "ours")


def serve(kind: str, port: int) -> None:
    """The server (in its own process) until killed."""
    import uvloop

    os.sched_setaffinity(0, {0})

    async def grpc_aio() -> None:
        import grpc
        from grpc import aio

        async def infer(request: bytes, context: object) -> bytes:
            return ANSWER

        handler = grpc.method_handlers_generic_handler(
            "inference.GRPCInferenceService",
            {"ModelInfer": grpc.unary_unary_rpc_method_handler(infer)},
        )
        server = aio.server()
        server.add_generic_rpc_handlers((handler,))
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        await server.wait_for_termination()

    async def ours() -> None:
        from gateway.grpc import calls
        from gateway.grpc.h2conn import Answer, H2Connection

        class Fixed:
            def call(self, headers: object, body: bytes) -> Answer:
                return calls.success(ANSWER, [])

            def oversized(self) -> Answer:
                return calls.failure(calls.RESOURCE_EXHAUSTED, "too large")

        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: H2Connection(Fixed(), max_body=1 << 20), "127.0.0.1", port
        )
        await server.serve_forever()

    uvloop.run(grpc_aio() if kind == "grpc_aio" else ours())


def wait_listening(port: int, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)  # not listening yet: ask again


def h2load(port: int, frame: Path, connections: int, seconds: int) -> float:
    command = ["taskset", "-c", "1", "h2load", "-t1", f"-c{connections}", "-m1", f"-D{seconds}"]
    command += ["-d", str(frame), "-H", "content-type: application/grpc", "-H", "te: trailers"]
    command.append(f"http://127.0.0.1:{port}{oip_legs.GRPC_METHOD}")
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    if not re.search(r" 0 failed, 0 errored", out):
        raise RuntimeError(f"h2load saw failures:\n{out}")
    found = re.search(r"finished in [\d.]+m?s, ([\d.]+) req/s", out)
    if found is None:
        raise RuntimeError(f"could not read h2load's output:\n{out}")
    return float(found.group(1))


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtests.grpc_servers")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    results: dict[str, list[float]] = {kind: [] for kind in SERVERS}
    with tempfile.TemporaryDirectory() as tmp:
        frame = Path(tmp) / "frame.bin"
        frame.write_bytes(oip_legs.grpc_frame(oip_legs.grpc_request("bench")))
        ports = {kind: free_port() for kind in SERVERS}
        procs = {
            kind: subprocess.Popen(
                [sys.executable, "-m", "loadtests.grpc_servers", "--serve", kind, str(port)]
            )
            for kind, port in ports.items()
        }
        try:
            for port in ports.values():
                wait_listening(port)
                h2load(port, frame, args.connections, 1)  # warm-up
            for _ in range(args.rounds):
                for kind in SERVERS:
                    results[kind].append(h2load(ports[kind], frame, args.connections, args.seconds))
        finally:
            for proc in procs.values():
                proc.terminate()
                proc.wait(timeout=10)
    for kind in SERVERS:
        rounds = ", ".join(f"{rps:,.0f}" for rps in results[kind])
        print(f"{kind:9} req/s at c{args.connections}: {rounds}")
    ratios = [o / g for o, g in zip(results["ours"], results["grpc_aio"], strict=True)]
    spread = f"rounds {min(ratios):.2f}-{max(ratios):.2f}"
    print(f"ours / grpc_aio: median {statistics.median(ratios):.2f} ({spread})")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--serve":
        serve(sys.argv[2], int(sys.argv[3]))
    else:
        raise SystemExit(main())
