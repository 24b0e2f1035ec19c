"""The HTTP edges of issue 18 over raw sockets against a real `modelyard serve` process (its
fast path, `/v2/...`, and a path it hands to uvicorn, `/livez`) and, for comparison, against
nginx when it is installed (`make system-deps`): the table is printed (`pytest -s`).

What is asserted is modelyard's answer; nginx's is only shown beside it."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from loadtests import benchkit
from modelyard.processes import ModelyardProcess

pytestmark = pytest.mark.e2e

FAST = "/v2/health/live"
SLOW = "/livez"  # not a fast path: the connection is handed to uvicorn
MIB = 1024 * 1024


def request(path: str, *headers: str, version: str = "HTTP/1.1", host: int = 1) -> bytes:
    lines = [f"GET {path} {version}", *["Host: t"] * host, *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def huge_head(path: str, total: int) -> Iterator[bytes]:
    """A request whose head never ends: 1 KiB headers, `total` bytes of them, 1 MiB a write."""
    yield f"GET {path} HTTP/1.1\r\nHost: t\r\n".encode()
    line = b"X-Pad: " + b"a" * 1015 + b"\r\n"
    for _ in range(total // MIB):
        yield line * 1024


@dataclass
class Seen:
    statuses: list[int]
    connection: str  # the first answer's Connection header
    closed: bool
    interim: bool  # a 100 Continue came

    def show(self) -> str:
        if not self.statuses:
            return "no answer" + (", closed" if self.closed else "")
        text = ",".join(map(str, self.statuses))
        if self.connection:
            text += f" ({self.connection})"
        return text + (", closed" if self.closed else "")


def exchange(port: int, parts: Iterable[bytes], quiet_s: float = 1.0) -> Seen:
    """Send `parts` (from a thread: a server may stop reading) and read until the server closes
    or stays quiet for `quiet_s`."""
    sock = socket.create_connection(("127.0.0.1", port))

    def send() -> None:
        try:
            for part in parts:
                sock.sendall(part)
        except OSError:  # the server refused and closed: the rest is not wanted
            pass

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    data, closed = b"", False
    sock.settimeout(quiet_s)
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                closed = True
                break
            data += chunk
    except TimeoutError:
        pass
    except ConnectionResetError:
        closed = True
    finally:
        sock.close()
        sender.join(10)
    statuses = [int(s) for s in re.findall(rb"HTTP/1\.[01] (\d{3}) ", data)]
    interim = 100 in statuses
    statuses = [s for s in statuses if s != 100]
    head = data.split(b" 100 Continue\r\n\r\n")[-1].split(b"\r\n\r\n")[0]  # the first answer's
    found = re.search(rb"^connection: *([^\r]*)", head, re.M | re.I)
    return Seen(statuses, found.group(1).decode().lower() if found else "", closed, interim)


CASES: dict[str, tuple[list[bytes], list[int]]] = {
    "10,000 headers": ([request(FAST, *[f"X-H{i}: v" for i in range(10_000)])], [431]),
    "10,000 headers (uvicorn)": ([request(SLOW, *[f"X-H{i}: v" for i in range(10_000)])], [431]),
    "one 100 KB header": ([request(FAST, "X-Big: " + "a" * 100_000)], [431]),
    "one 100 KB header (uvicorn)": ([request(SLOW, "X-Big: " + "a" * 100_000)], [431]),
    "request line of 9 KB": ([request(FAST + "?" + "q" * 9000)], [414]),
    "HTTP/1.1 without Host": ([request(FAST, host=0)], [400]),
    "HTTP/1.1 without Host (uvicorn)": ([request(SLOW, host=0)], [400]),
    "HTTP/1.1 with two Host": ([request(FAST, host=2)], [400]),
    "HTTP/2.0 request line": ([request(FAST, version="HTTP/2.0")], [505]),
    "HTTP/2.0 request line (uvicorn)": ([request(SLOW, version="HTTP/2.0")], [505]),
    "HTTP/0.9 (GET /path, empty line)": ([f"GET {FAST}\r\n\r\n".encode()], [400]),
    # what an HTTP/0.9 client sends: the line alone (nginx answers the body alone and closes)
    "HTTP/0.9 (GET /path, line end only)": ([f"GET {FAST}\r\n".encode()], [400]),
    "valid, then malformed, pipelined": (
        [request(FAST) + b"GET / HTTP/1.1\r\nHost: t\r\nBad Header\r\n\r\n"],
        [200, 400],
    ),
    "Expect: 100-continue, 2 GB body": (
        [request(FAST, "Content-Length: 2000000000", "Expect: 100-continue")],
        [413],
    ),
    "Expect: 100-Continue, 2-byte body": (
        [request(FAST, "Content-Length: 2", "Expect: 100-Continue"), b"{}"],
        [200],
    ),
    "HTTP/1.0 keep-alive": ([request(FAST, "Connection: keep-alive", version="HTTP/1.0")], [200]),
}


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def run_cases(port: int) -> dict[str, Seen]:
    return {name: exchange(port, parts) for name, (parts, _) in CASES.items()}


def test_http_edges_against_modelyard_and_nginx(tmp_path: Path, admin_token: str) -> None:
    proc = ModelyardProcess("serve", tmp_path / "data", admin_token)
    proc.start()
    try:
        assert proc.proc is not None
        ours = run_cases(proc.port)
        for _ in range(3):  # warm: the refusal path's buffers exist before measuring
            exchange(proc.port, huge_head(FAST, 4 * MIB))
        before, started = rss(proc.proc.pid), time.perf_counter()
        huge = exchange(proc.port, huge_head(FAST, 200 * MIB))
        took, grown = time.perf_counter() - started, rss(proc.proc.pid) - before
        huge_slow = exchange(proc.port, huge_head(SLOW, 200 * MIB))
        grown_slow = rss(proc.proc.pid) - before
        alive = exchange(proc.port, [request(FAST)])
    finally:
        proc.stop()
    theirs = nginx_answers(tmp_path)
    print(f"\n{'case':<38} {'modelyard':<28} nginx")
    for name, seen in ours.items():
        other = theirs[name].show() if theirs else "(nginx not installed)"
        print(f"{name:<38} {seen.show():<28} {other}")
    print(
        f"200 MiB of headers: {huge.show()} in {took:.2f} s, RSS grew {grown / MIB:.2f} MiB"
        f" (uvicorn path: {huge_slow.show()}, {grown_slow / MIB:.2f} MiB)"
    )
    for name, (_, expected) in CASES.items():
        assert ours[name].statuses == expected, (name, ours[name])
    assert not ours["Expect: 100-continue, 2 GB body"].interim
    assert ours["Expect: 100-Continue, 2-byte body"].interim
    assert ours["HTTP/1.0 keep-alive"].connection == "keep-alive"
    assert ours["valid, then malformed, pipelined"].closed
    assert huge.statuses == [431] and huge_slow.statuses == [431]
    assert grown < 5 * MIB and grown_slow < 5 * MIB, (grown, grown_slow)
    assert alive.statuses == [200]


def test_a_bare_request_line_gets_400_from_the_registry_role(
    tmp_path: Path, admin_token: str
) -> None:
    """`modelyard registry` serves with uvicorn's protocol alone (no fast path): a request line
    without a version is answered at once there too, not after the head's 30 s limit."""
    proc = ModelyardProcess("registry", tmp_path / "data", admin_token)
    proc.start()
    try:
        seen = {line: exchange(proc.port, [line], quiet_s=5.0) for line in BARE_LINES}
        alive = exchange(proc.port, [request(SLOW)])
    finally:
        proc.stop()
    for line, answer in seen.items():
        print(f"{line!r}: {answer.show()}")
        assert answer.statuses == [400] and answer.closed, (line, answer)
    assert alive.statuses == [200]


BARE_LINES = [b"GET /livez\r\n", b"GET /\n", b"GET /api/v1/models\r\n"]


def nginx_answers(tmp_path: Path) -> dict[str, Seen] | None:
    tools = benchkit.find_tools()
    if isinstance(tools, list):
        return None
    pin = benchkit.Pinning(tools.taskset, None, None)
    location = benchkit.FIXED_LOCATION.format(body='{"live":true}')
    with benchkit.nginx(tools, pin, tmp_path / "nginx", location) as server:
        port = int(server.url.rsplit(":", 1)[1])
        return run_cases(port)
