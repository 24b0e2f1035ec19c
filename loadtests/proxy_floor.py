"""The floor: how fast can any Python asyncio (uvloop) + httptools HTTP/1.1 proxy go here?

A throwaway measuring stick for issue 23, not a part of the gateway. It does the least a proxy
in front of one fixed upstream must do and nothing else: httptools parses each client request
(url, headers, body), the request is re-encoded for the upstream (request line, Host,
Content-Type, Content-Length, body) and written to one keep-alive upstream connection owned by
the client connection (opened on the first request, reused afterwards: a "pool" of one per
client connection), httptools parses the upstream's answer, and the body goes back to the
client with a status line and Content-Length. No routing (one fixed route), no metrics, no
timeouts, no retries, no pipelining beyond one request in flight per connection.

    python -m loadtests.proxy_floor --port 8100 --upstream 127.0.0.1:8080 [--path /predict]
    python -m loadtests.proxy_floor --bench [--quick]   # beside nginx and the gateway, wrk

`--bench` starts the fixed nginx upstream, an nginx proxy, this proxy and `modelyard serve`
(loadtests/gateway_bench.py's legs and pinning: wrk on one CPU, every server on the other) and
measures them interleaved at c1 and c16 with wrk (take `flock /tmp/modelyard-bench.lock`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, Final

import httptools
import uvloop

from adapters.net import free_port

STATUS_LINE: Final = b"HTTP/1.1 200 OK\r\n"


class _Message(asyncio.Protocol):
    """httptools callbacks both sides share: the content type and the body of a message."""

    ctype: bytes
    body: list[bytes]

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"content-type":
            self.ctype = value

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def take_body(self) -> bytes:
        body = b"".join(self.body)
        self.body = []
        return body


class Upstream(_Message):
    """One keep-alive connection to the upstream; answers go back to `client`."""

    def __init__(self, client: Front) -> None:
        self.client = client
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.body: list[bytes] = []
        self.ctype = b"application/json"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_message_complete(self) -> None:
        body = self.take_body()
        self.client.answer(self.parser.get_status_code(), self.ctype, body)

    def connection_lost(self, exc: Exception | None) -> None:
        self.client.upstream_lost()


class Front(_Message):
    """A client connection: parse, forward, answer; one request in flight."""

    def __init__(self, host: str, port: int, path: bytes) -> None:
        self.loop = asyncio.get_running_loop()
        self.host, self.port, self.path = host, port, path
        self.host_header = f"{host}:{port}".encode()
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.upstream: Upstream | None = None
        self.connecting = False
        self.pending: list[bytes] = []
        self.ctype = b"application/json"
        self.body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            assert self.transport is not None
            self.transport.close()

    def on_url(self, url: bytes) -> None:
        pass  # one fixed route

    def on_message_complete(self) -> None:
        body = self.take_body()
        head = b"POST %b HTTP/1.1\r\nHost: %b\r\nContent-Type: %b\r\nContent-Length: %d\r\n\r\n" % (
            self.path,
            self.host_header,
            self.ctype,
            len(body),
        )
        message = head + body
        upstream = self.upstream
        if upstream is not None and upstream.transport is not None:
            upstream.transport.write(message)
            return
        self.pending.append(message)
        if not self.connecting:
            self.connecting = True
            self.loop.create_task(self.connect())

    async def connect(self) -> None:
        _, upstream = await self.loop.create_connection(
            lambda: Upstream(self), self.host, self.port
        )
        self.upstream = upstream
        self.connecting = False
        assert upstream.transport is not None
        for message in self.pending:
            upstream.transport.write(message)
        self.pending = []

    def answer(self, status: int, ctype: bytes, body: bytes) -> None:
        assert self.transport is not None
        line = STATUS_LINE if status == 200 else b"HTTP/1.1 %d X\r\n" % status
        self.transport.write(
            line + b"Content-Type: %b\r\nContent-Length: %d\r\n\r\n%b" % (ctype, len(body), body)
        )

    def upstream_lost(self) -> None:
        self.upstream = None

    def connection_lost(self, exc: Exception | None) -> None:
        upstream = self.upstream
        if upstream is not None and upstream.transport is not None:
            upstream.transport.close()


async def serve(port: int, upstream: str, path: str) -> None:
    host, _, up_port = upstream.rpartition(":")
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: Front(host, int(up_port), path.encode()), "127.0.0.1", port, backlog=1024
    )
    async with server:
        await server.serve_forever()


# --- the bench ------------------------------------------------------------------------------


@contextmanager
def floor_proxy(pin: Any, upstream_url: str, root: Path) -> Iterator[tuple[str, int]]:
    """This module as a server on the server CPU; always stopped."""
    from loadtests.benchkit import terminate, wait_http

    port = free_port()
    root.mkdir(parents=True, exist_ok=True)
    log = root / "floor.log"
    with open(log, "wb") as output:
        proc = subprocess.Popen(
            pin.server_command(
                [
                    sys.executable,
                    "-m",
                    "loadtests.proxy_floor",
                    "--port",
                    str(port),
                    "--upstream",
                    upstream_url.removeprefix("http://"),
                ]
            ),
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/", 20, proc, log)
        yield url, proc.pid
    finally:
        terminate(proc)


def bench(quick: bool, rounds: int, checkouts: dict[str, Path]) -> dict[str, Any]:
    """direct, nginx, floor and two gateway legs per checkout (pinned and the 10 % sticky
    canary), interleaved; for every proxy leg also its own CPU time per request (the proxy's
    processes only, from /proc: the upstream's CPU is not in it), the per-core figure."""
    from adapters.process_tree import descendants
    from loadtests import benchkit, canary_leg
    from loadtests.benchkit import FIXED_LOCATION, PROXY_LOCATION, PROXY_UPSTREAM, Pinning
    from loadtests.gateway_bench import FIXED_RESPONSE, GATEWAY_PATH, gateway, make_body

    tools = benchkit.find_tools()
    if isinstance(tools, list):
        raise SystemExit(f"missing: {tools}")
    pin = Pinning.choose(tools.taskset)
    seconds, warmup = (2, 1) if quick else (5, 2)
    loads = [Path("/proc/loadavg").read_text().split()[0]]
    with tempfile.TemporaryDirectory(prefix="proxy-floor-") as tmp, ExitStack() as stack:
        work = Path(tmp)
        upstream = stack.enter_context(
            benchkit.nginx(tools, pin, work / "up", FIXED_LOCATION.format(body=FIXED_RESPONSE))
        )
        proxy = stack.enter_context(
            benchkit.nginx(
                tools,
                pin,
                work / "proxy",
                PROXY_LOCATION,
                PROXY_UPSTREAM.format(port=upstream.url.rsplit(":", 1)[1]),
            )
        )
        floor, floor_pid = stack.enter_context(floor_proxy(pin, upstream.url, work / "floor"))
        targets = {
            "direct": upstream.url + "/predict",
            "nginx": proxy.url + "/predict",
            "floor": floor + "/predict",
        }
        pids = {"direct": upstream.pid, "nginx": proxy.pid, "floor": floor_pid}
        script = benchkit.lua_script(work / "post.lua", make_body())
        scripts = dict.fromkeys(targets, script)
        for name, checkout in checkouts.items():
            yard = stack.enter_context(gateway(work / name, pin, upstream, checkout=checkout))
            assert yard.proc is not None
            targets[name] = yard.url + GATEWAY_PATH
            scripts[name] = script
            canary_leg.setup(yard, upstream.url, make_body())
            targets[name + "_canary"] = yard.url + canary_leg.PATH
            scripts[name + "_canary"] = canary_leg.lua_script(work / "canary.lua", make_body())
            pids[name] = pids[name + "_canary"] = yard.proc.pid
        cpu: dict[str, dict[int, list[float]]] = {leg: {} for leg in targets}

        def run(leg: str, connections: int, duration: int) -> benchkit.WrkResult:
            tree = [pids[leg], *descendants(pids[leg])]
            before = benchkit.cpu_seconds(tree)
            result = benchkit.wrk(tools, pin, targets[leg], scripts[leg], connections, duration, 1)
            used = benchkit.cpu_used(before, benchkit.cpu_seconds(tree))
            if duration == seconds:  # not the warm-ups
                cpu[leg].setdefault(connections, []).append(1e6 * used / result.requests)
            return result

        runs = [
            benchkit.interleaved(list(targets), run, (1, 16), seconds, warmup)
            for _ in range(rounds)
        ]
        loads.append(Path("/proc/loadavg").read_text().split()[0])
    return {"load": loads, "runs": runs, "cpu_us_per_request": cpu, "at": time.time()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtests.proxy_floor")
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--upstream", default="127.0.0.1:8080")
    parser.add_argument("--path", default="/predict")
    parser.add_argument("--bench", action="store_true")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument(
        "--checkout", action="append", default=[], help="name=path: a gateway leg's checkout"
    )
    args = parser.parse_args(argv)
    if args.bench:
        checkouts = {
            name: Path(path).resolve()
            for name, path in (item.split("=", 1) for item in args.checkout)
        }
        print(
            json.dumps(
                bench(args.quick, args.rounds, checkouts or {"gateway": Path.cwd()}), indent=2
            )
        )
        return 0
    uvloop.install()
    asyncio.run(serve(args.port, args.upstream, args.path))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
