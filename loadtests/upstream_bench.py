"""Micro-benchmark of the gateway's upstream client against aiohttp and httpx.

Why: the upstream client sits on every inference call, and DESIGN.md ("How to measure") chose a
small client of our own because the general ones were several times slower. This keeps that claim
checked: the same fixed-response upstream, the same POST, one run, side by side; ratios count more
than absolute figures on these shared machines.

The upstream is nginx (one worker) when installed, else a minimal uvloop server of our own; it is
pinned to the last CPU and this process to the first, so client and server do not fight over one
core. Each client runs a sequential loop (latency) and a concurrency-16 loop (throughput) for
`--seconds`, after a short warm-up, on each event loop named in `--loops`.

    python -m loadtests.upstream_bench [--seconds 3] [--loops uvloop,asyncio] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import uvloop

from gateway.transport.pool import UpstreamPool

LOOPBACK = "127.0.0.1"
CONCURRENCY = 16
DEFAULT_SECONDS = 3.0
WARMUP_S = 0.5
READY_TIMEOUT_S = 10.0
REQUEST_TIMEOUT_S = 5.0
PATH = "/v2/models/iris/infer"
BODY = json.dumps(
    {
        "inputs": [
            {"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}
        ],
        "parameters": {"content_type": "np"},
        "id": "bench-00000000-0000-0000-0000-000000000000",
    }
).encode()  # about 200 bytes, like the DESIGN.md measurements
ANSWER = b'{"model_name":"iris","outputs":[{"name":"y","datatype":"INT64","shape":[1],"data":[0]}]}'
HEADERS = [(b"content-type", b"application/json"), (b"traceparent", b"00-" + b"ab" * 16 + b"-01")]

Send = Callable[[], Awaitable[int]]


# -- the upstream ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def pin(cpu: int) -> Callable[[], None]:
    return lambda: os.sched_setaffinity(0, {cpu})


def nginx_config(folder: Path, port: int) -> Path:
    body = ANSWER.decode()
    conf = folder / "nginx.conf"
    conf.write_text(f"""
daemon off;
worker_processes 1;
pid {folder}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {folder}/body; proxy_temp_path {folder}/proxy;
    fastcgi_temp_path {folder}/fastcgi; uwsgi_temp_path {folder}/uwsgi;
    scgi_temp_path {folder}/scgi;
    keepalive_requests 100000000; keepalive_timeout 300s;
    server {{
        listen {LOOPBACK}:{port};
        location / {{ default_type application/json; return 200 '{body}'; }}
    }}
}}
""")
    return conf


@contextlib.contextmanager
def upstream(cpu: int) -> Iterator[tuple[str, str]]:
    """Start the fixed-response upstream; yields (base URL, what it is). Stopped by its PID."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="upstream-bench-") as tmp:
        nginx = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
        if nginx:
            command = [nginx, "-c", str(nginx_config(Path(tmp), port)), "-p", tmp]
            kind = "nginx, 1 worker"
        else:
            command = [sys.executable, "-m", "loadtests.upstream_bench", "--serve", str(port)]
            kind = "uvloop fixed-response server"
        process = subprocess.Popen(command, preexec_fn=pin(cpu))
        try:
            wait_accepting(port, process)
            yield f"http://{LOOPBACK}:{port}", kind
        finally:
            process.terminate()
            process.wait(timeout=READY_TIMEOUT_S)


def wait_accepting(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the upstream exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection((LOOPBACK, port), 0.1):
            return
        time.sleep(0.02)
    raise SystemExit(f"the upstream did not accept on port {port} in {READY_TIMEOUT_S} s")


class FixedAnswer(asyncio.Protocol):
    """The fallback upstream: one fixed answer per request head (bodies are small, one packet)."""

    RESPONSE = (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
        % (
            len(ANSWER),
            ANSWER,
        )
    )

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(self.RESPONSE * data.count(b"HTTP/1.1\r\n"))


async def serve_fixed(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(FixedAnswer, LOOPBACK, port)
    async with server:
        await server.serve_forever()


# -- the clients ----------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def ours(url: str) -> Any:
    pool = UpstreamPool(url, max_connections=CONCURRENCY)
    path = PATH.encode()

    async def send() -> int:
        response = await pool.request(b"POST", path, HEADERS, BODY, REQUEST_TIMEOUT_S)
        return response.status

    try:
        yield send
    finally:
        await pool.close()


@contextlib.asynccontextmanager
async def with_aiohttp(url: str) -> Any:
    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    headers = {k.decode(): v.decode() for k, v in HEADERS}
    async with aiohttp.ClientSession(url, connector=connector, timeout=timeout) as session:

        async def send() -> int:
            async with session.post(PATH, data=BODY, headers=headers) as response:
                await response.read()
                return response.status

        yield send


@contextlib.asynccontextmanager
async def with_httpx(url: str) -> Any:
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    headers = {k.decode(): v.decode() for k, v in HEADERS}
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=REQUEST_TIMEOUT_S) as client:

        async def send() -> int:
            response = await client.post(PATH, content=BODY, headers=headers)
            return response.status_code

        yield send


CLIENTS = {"modelyard": ours, "aiohttp": with_aiohttp, "httpx": with_httpx}


# -- the loops ------------------------------------------------------------------------------------


async def drive(send: Send, concurrency: int, seconds: float) -> list[int]:
    """Run `concurrency` request loops until the deadline; the latency of each request, in ns."""
    latencies: list[int] = []
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        clock = time.perf_counter_ns
        while time.perf_counter() < deadline:
            started = clock()
            status = await send()
            latencies.append(clock() - started)
            if status != 200:
                raise RuntimeError(f"unexpected status {status}")

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies


def summary(latencies: list[int], seconds: float) -> dict[str, float]:
    ordered = sorted(latencies)
    return {
        "requests": len(ordered),
        "req_s": len(ordered) / seconds,
        "p50_ms": ordered[len(ordered) // 2] / 1e6,
        "p99_ms": ordered[min(len(ordered) - 1, len(ordered) * 99 // 100)] / 1e6,
    }


async def measure(url: str, seconds: float) -> dict[str, dict[str, dict[str, float]]]:
    results: dict[str, dict[str, dict[str, float]]] = {}
    for name, client in CLIENTS.items():
        async with client(url) as send:
            results[name] = {}
            for concurrency in (1, CONCURRENCY):
                await drive(send, concurrency, WARMUP_S)
                started = time.perf_counter()
                latencies = await drive(send, concurrency, seconds)
                results[name][f"c{concurrency}"] = summary(latencies, time.perf_counter() - started)
    return results


def table(loop: str, results: dict[str, dict[str, dict[str, float]]]) -> str:
    rows = [
        f"\nevent loop: {loop}",
        "| client | concurrency | req/s | p50 ms | p99 ms | req/s, ours ÷ this |",
        "|---|---|---|---|---|---|",
    ]
    for mode in ("c1", f"c{CONCURRENCY}"):
        base = results["modelyard"][mode]["req_s"]
        for name, per_mode in results.items():
            row = per_mode[mode]
            rows.append(
                f"| {name} | {mode[1:]} | {row['req_s']:,.0f} | {row['p50_ms']:.3f} "
                f"| {row['p99_ms']:.3f} | {base / row['req_s']:.2f}x |"
            )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=DEFAULT_SECONDS)
    parser.add_argument("--loops", default="uvloop,asyncio")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)  # the fallback upstream
    args = parser.parse_args()
    if args.serve:
        uvloop.run(serve_fixed(args.serve))
        return
    cpus = sorted(os.sched_getaffinity(0))
    client_cpu, server_cpu = cpus[0], cpus[-1]
    os.sched_setaffinity(0, {client_cpu})
    report: dict[str, Any] = {"cpus": {"client": client_cpu, "upstream": server_cpu}}
    with upstream(server_cpu) as (url, kind):
        report["upstream"] = kind
        print(f"upstream: {kind} at {url} on CPU {server_cpu}; clients on CPU {client_cpu}")
        print(f"POST {len(BODY)} bytes, answer {len(ANSWER)} bytes, {args.seconds:g} s per loop")
        for loop in args.loops.split(","):
            factory = uvloop.new_event_loop if loop == "uvloop" else asyncio.new_event_loop
            with asyncio.Runner(loop_factory=factory) as runner:
                results = runner.run(measure(url, args.seconds))
            report[loop] = results
            print(table(loop, results), flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
