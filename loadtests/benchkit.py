"""What the benchmarks share: tools, CPU pinning and CPU time, processes, nginx and wrk.

Everything here is Linux (it reads /proc and uses `sched_setaffinity`) and loopback only.
A failure of the run (not mere slowness) is a `BenchError`; a benchmark exits non-zero on one.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import httpx

from adapters.net import free_port
from adapters.process_tree import alive, descendants, kill_all

PACKAGES: Final = {"wrk": "wrk", "nginx": "nginx-light", "taskset": "util-linux"}  # Debian
READY_TIMEOUT_S: Final = 15.0  # nginx answering its first request
STOP_TIMEOUT_S: Final = 20.0
WRK_GRACE_S: Final = 30.0  # wrk's own run time plus this, or it is killed
WRK_TIMEOUT: Final = "5s"  # a request unanswered this long counts as a wrk timeout error
CLOCK_TICKS: Final = os.sysconf("SC_CLK_TCK")  # the unit of utime and stime in /proc/<pid>/stat


class BenchError(RuntimeError):
    """Something failed outright (not merely slow): the run exits non-zero."""


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def machine() -> dict[str, Any]:
    """The machine a report was measured on."""
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_1m_at_start": round(os.getloadavg()[0], 2),
    }


def num(value: float | None, fmt: str) -> str:
    """A figure for a table: `format(value, fmt)`, or "-" when there is none."""
    return "-" if value is None else format(value, fmt)


def write_report(path: Path, report: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")


# --- tools ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tools:
    wrk: str
    nginx: str
    taskset: str


def find_tools() -> Tools | list[str]:
    """The tools' full paths, or the names of those missing (nginx lives in /usr/sbin, which a
    user's PATH may lack)."""
    search = os.pathsep.join([os.environ.get("PATH", os.defpath), "/usr/sbin", "/sbin"])
    found = {name: shutil.which(name, path=search) for name in PACKAGES}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        return missing
    return Tools(**{name: str(path) for name, path in found.items()})


def tool_output(command: list[str]) -> str:
    """stdout and stderr of a short command (`nginx -V`, `wrk -v`), whatever its exit code."""
    done = subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)
    return done.stdout + done.stderr


def tool_version(command: list[str]) -> str:
    lines = tool_output(command).strip().splitlines()
    return lines[0].strip() if lines else "unknown"


# --- CPUs -----------------------------------------------------------------------------------


def pin_threads(pid: int, cpus: set[int]) -> int:
    """Move every thread of a running process to `cpus`; returns how many."""
    moved = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(ProcessLookupError):  # a thread that just ended
            os.sched_setaffinity(int(task.name), cpus)
            moved += 1
    return moved


@dataclass(frozen=True)
class Pinning:
    """wrk on `client` CPU, every server on `server` CPU; None when there is only one CPU."""

    taskset: str
    client: int | None
    server: int | None

    @classmethod
    def choose(cls, taskset: str) -> Pinning:
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2:
            return cls(taskset, None, None)
        return cls(taskset, cpus[0], cpus[1])

    def client_command(self, command: list[str]) -> list[str]:
        return self._wrap(self.client, command)

    def server_command(self, command: list[str]) -> list[str]:
        return self._wrap(self.server, command)

    def _wrap(self, cpu: int | None, command: list[str]) -> list[str]:
        return command if cpu is None else [self.taskset, "-c", str(cpu), *command]

    def pin_threads(self, pid: int) -> int:
        """Move every thread of a running process to the server CPU; returns how many."""
        return 0 if self.server is None else pin_threads(pid, {self.server})

    def pin_tree(self, pid: int, cpu: int | None = None) -> tuple[int, int]:
        """Every thread of `pid` and of all its descendants (in sessions of their own or not)
        to `cpu` (the server CPU unless told); returns (processes, threads) moved."""
        if self.server is None:
            return 0, 0
        cpu = self.server if cpu is None else cpu
        processes = threads = 0
        for each in [pid, *descendants(pid)]:
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):  # one that ended
                threads += pin_threads(each, {cpu})
                processes += 1
        return processes, threads


def cpu_seconds(pids: Iterable[int]) -> dict[int, float]:
    """User + system CPU time so far of each process still there (all its threads, from
    /proc/<pid>/stat; a resolution of 1/SC_CLK_TCK s)."""
    found: dict[int, float] = {}
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            found[pid] = _stat_cpu(Path(f"/proc/{pid}/stat"))
    return found


def _stat_cpu(stat: Path) -> float:
    """utime + stime, in seconds, from a /proc `stat` file (a process's or a thread's)."""
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def thread_cpu_seconds(pid: int) -> dict[int, float]:
    """User + system CPU time so far of each thread of `pid` (by thread id: the main
    thread's is `pid`), from /proc/<pid>/task/<tid>/stat; {} once the process is gone."""
    found: dict[int, float] = {}
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError, ValueError, IndexError):
                found[int(task.name)] = _stat_cpu(task / "stat")
    return found


def rss_mb(pid: int) -> float:
    """The process's resident memory now, in MiB (VmRSS in /proc/<pid>/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise BenchError(f"no VmRSS for process {pid}")


def cpu_used(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds used between two `cpu_seconds` readings (a process new since counts whole;
    one that ended in between is lost)."""
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())


# --- processes ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Server:
    url: str
    pid: int


def tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else ""


def wait_http(url: str, deadline_s: float, alive: subprocess.Popen[bytes], log: Path) -> None:
    """Poll GET `url` until it answers 200; the process must stay up meanwhile."""
    deadline = time.monotonic() + deadline_s
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if alive.poll() is not None:
                raise BenchError(f"{url}: the server exited with {alive.returncode}:\n{tail(log)}")
            with contextlib.suppress(httpx.TransportError):
                if client.get(url).status_code == 200:
                    return
            time.sleep(0.05)
    raise BenchError(f"{url} did not answer 200 within {deadline_s:.0f} s:\n{tail(log)}")


def terminate(proc: subprocess.Popen[bytes], known: Iterable[int] = ()) -> None:
    """SIGTERM to the process and wait; if it hangs, SIGKILL to its descendants, then to it.
    Afterwards SIGKILL to any of `known` (descendants found while it ran) still alive: BentoML's
    workers live in sessions of their own and may outlive their parent."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            kill_all(descendants(proc.pid))
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT_S)
    kill_all([pid for pid in known if alive(pid)])


# --- nginx ----------------------------------------------------------------------------------

NGINX_CONF: Final = """\
daemon off;
master_process on;
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{
    worker_connections 4096;
}}
http {{
    access_log off;
{temp_paths}
    keepalive_requests 1000000;
    keepalive_timeout 75s;
{upstream}
    server {{
        listen 127.0.0.1:{port};
        location / {{
{location}
        }}
    }}
}}
"""
FIXED_LOCATION: Final = """\
            default_type application/json;
            return 200 '{body}';"""
PROXY_UPSTREAM: Final = """\
    upstream backend {{
        server 127.0.0.1:{port};
        keepalive 64;
        keepalive_requests 1000000;
    }}"""
PROXY_LOCATION: Final = """\
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";"""
TEMP_PATHS: Final = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


def nginx_conf(root: Path, port: int, location: str, upstream: str, built_without: str) -> str:
    """One worker, every file under `root`; temp paths only for modules nginx was built with."""
    temp_paths = "\n".join(
        f"    {name}_temp_path {root}/{name}_temp;"
        for name in TEMP_PATHS
        if name == "client_body" or f"--without-http_{name}_module" not in built_without
    )
    return NGINX_CONF.format(
        root=root, port=port, temp_paths=temp_paths, upstream=upstream, location=location
    )


@contextmanager
def nginx(
    tools: Tools, pin: Pinning, root: Path, location: str, upstream: str = ""
) -> Iterator[Server]:
    """nginx with one worker on the server CPU, on a free loopback port; always stopped
    (SIGTERM, fast shutdown, to the master)."""
    root.mkdir(parents=True)
    port = free_port()
    built = tool_output([tools.nginx, "-V"])
    conf = root / "nginx.conf"
    conf.write_text(nginx_conf(root, port, location, upstream, built))
    log = root / "error.log"
    with open(root / "output.log", "wb") as output:
        proc = subprocess.Popen(
            pin.server_command([tools.nginx, "-p", f"{root}/", "-c", str(conf), "-e", str(log)]),
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/", READY_TIMEOUT_S, proc, log)
        yield Server(url=url, pid=proc.pid)
    except BenchError as exc:
        raise BenchError(f"{exc}\n--- nginx output ---\n{tail(root / 'output.log')}") from exc
    finally:
        terminate(proc)


# --- wrk ------------------------------------------------------------------------------------


def lua_script(path: Path, body: str) -> Path:
    """POST `body` as JSON on every request. Non-2xx answers are counted by wrk itself (its
    "Non-2xx or 3xx responses" line): a Lua `response` hook would cost wrk CPU on every answer."""
    if "]==]" in body:
        raise ValueError("the body would end the Lua long string")
    path.write_text(
        "-- written by loadtests/benchkit.py\n"
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = [==[{body}]==]\n"
    )
    return path


@dataclass(frozen=True)
class WrkResult:
    requests: int
    rps: float
    p50_ms: float
    p99_ms: float

    def summary(self) -> dict[str, float | int]:
        return {
            "rps": round(self.rps, 1),
            "p50_ms": round(self.p50_ms, 4),
            "p99_ms": round(self.p99_ms, 4),
            "requests": self.requests,
        }


_UNIT_MS: Final = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
_PERCENTILE: Final = re.compile(r"^\s*(50|75|90|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s|m|h)\s*$", re.M)
_REQUESTS: Final = re.compile(r"^\s*(\d+) requests in ", re.M)
_RPS: Final = re.compile(r"^Requests/sec:\s+([\d.]+)", re.M)
_NON_2XX: Final = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
_SOCKET: Final = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")


class NoRequestCompleted(BenchError):
    """A wrk run in which no request finished: on a machine busy enough, a short run."""


def parse_wrk(output: str) -> WrkResult:
    """req/s and the 50th and 99th percentiles from `wrk --latency` output; errors raise."""
    non_2xx = _NON_2XX.search(output)
    if non_2xx is not None and int(non_2xx.group(1)) > 0:
        raise BenchError(f"wrk counted {non_2xx.group(1)} non-2xx answers:\n{output}")
    sockets = _SOCKET.search(output)
    if sockets is not None and any(int(n) for n in sockets.groups()):
        raise BenchError(f"wrk counted socket errors:\n{output}")
    percentiles = {int(p): float(v) * _UNIT_MS[unit] for p, v, unit in _PERCENTILE.findall(output)}
    requests, rps = _REQUESTS.search(output), _RPS.search(output)
    if requests is None or rps is None or not {50, 99} <= percentiles.keys():
        raise BenchError(f"could not read wrk's output:\n{output}")
    if int(requests.group(1)) == 0:
        raise NoRequestCompleted(f"wrk completed no request:\n{output}")
    return WrkResult(int(requests.group(1)), float(rps.group(1)), percentiles[50], percentiles[99])


def wrk(
    tools: Tools, pin: Pinning, url: str, script: Path, connections: int, seconds: int, threads: int
) -> WrkResult:
    """One `wrk --latency` run on the client CPU; a failed or unreadable run raises. A run in
    which no request finished (a short run on a machine busy enough: seen with other benchmarks
    pinned to the same CPU) is run once more, five times as long, before it counts as failed."""
    try:
        return _wrk_once(tools, pin, url, script, connections, seconds, threads)
    except NoRequestCompleted:
        say(f"{url}: no request finished in {seconds} s; once more for {5 * seconds} s")
        return _wrk_once(tools, pin, url, script, connections, 5 * seconds, threads)


def _wrk_once(
    tools: Tools, pin: Pinning, url: str, script: Path, connections: int, seconds: int, threads: int
) -> WrkResult:
    command = pin.client_command(
        [
            tools.wrk,
            f"-t{min(threads, connections)}",
            f"-c{connections}",
            f"-d{seconds}s",
            f"--timeout={WRK_TIMEOUT}",
            "--latency",
            "-s",
            str(script),
            url,
        ]
    )
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=seconds + WRK_GRACE_S, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"wrk against {url} ran past {seconds + WRK_GRACE_S:.0f} s") from exc
    if done.returncode != 0:
        raise BenchError(f"wrk against {url} exited with {done.returncode}:\n{done.stderr}")
    try:
        return parse_wrk(done.stdout)
    except NoRequestCompleted as exc:
        raise NoRequestCompleted(f"POST {url}, {connections} connections: {exc}") from exc
    except BenchError as exc:
        raise BenchError(f"POST {url}, {connections} connections: {exc}") from exc


def in_turn(legs: Sequence[str], round_: int) -> list[str]:
    """The legs in round `round_`'s order: rotated by one each round, so that no leg always
    runs first, or always right after the same other one."""
    if not legs:
        return []
    at = round_ % len(legs)
    return [*legs[at:], *legs[:at]]


def interleaved(
    legs: Sequence[str],
    run: Callable[[str, int, int], WrkResult],
    concurrencies: Sequence[int],
    seconds: int,
    warmup_s: int,
    prefix: str = "",
    rounds: int = 1,
) -> dict[str, dict[str, Any]]:
    """Warm every leg up, then for each concurrency measure every leg in turn (`run(leg,
    connections, seconds)`), `rounds` times over, so that noise hits them alike: a burst
    of a neighbour's work lands in one round of every leg rather than in all of one leg's
    seconds; the order rotates by one each round (`in_turn`). A leg's figure is the median
    of its rounds (`median_summary`). A leg that fails gets {"error": ...} and is not
    measured again; the others go on."""
    runs: dict[str, dict[str, Any]] = {leg: {} for leg in legs}
    live = list(legs)

    def one(leg: str, connections: int, duration: int) -> WrkResult | None:
        try:
            return run(leg, connections, duration)
        except BenchError as exc:
            say(f"[{prefix}{leg}] FAILED: {exc}")
            runs[leg] = {"error": str(exc)}
            live.remove(leg)
            return None

    for leg in list(live):
        say(f"[{prefix}{leg}] warm-up {warmup_s} s at c{max(concurrencies)}")
        one(leg, max(concurrencies), warmup_s)
    for connections in concurrencies:
        measured: dict[str, list[WrkResult]] = {leg: [] for leg in legs}
        for round_ in range(rounds):
            for leg in in_turn(live, round_):
                result = one(leg, connections, seconds)
                if result is None:
                    continue
                measured[leg].append(result)
                of = f" (round {round_ + 1}/{rounds})" if rounds > 1 else ""
                say(
                    f"[{prefix}{leg}] c{connections}{of}: {result.rps:,.0f} req/s,"
                    f" p50 {result.p50_ms:.3f} ms, p99 {result.p99_ms:.3f} ms"
                )
        for leg in live:
            runs[leg][f"c{connections}"] = median_summary(measured[leg])
    return runs


def median_summary(results: Sequence[WrkResult]) -> dict[str, Any]:
    """One leg's figure over its rounds: the median of each of req/s, p50 and p99 (each
    over the rounds on its own), the requests of all rounds, and each round's req/s."""
    if len(results) == 1:
        return results[0].summary()
    return {
        "rps": round(statistics.median(r.rps for r in results), 1),
        "p50_ms": round(statistics.median(r.p50_ms for r in results), 4),
        "p99_ms": round(statistics.median(r.p99_ms for r in results), 4),
        "requests": sum(r.requests for r in results),
        "rounds_rps": [round(r.rps, 1) for r in results],
    }
