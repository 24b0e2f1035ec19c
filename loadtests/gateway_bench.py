"""Gateway benchmark: the gateway side by side with direct calls and with nginx as a proxy.

Run it from the repository root (or with `make bench-gateway`):

    python -m loadtests.gateway_bench            # the full run (about three minutes)
    python -m loadtests.gateway_bench --quick    # 2 s a measurement, no BentoML: a smoke run
    python -m loadtests.gateway_bench --out /tmp/gateway-bench.json

It needs `wrk` and `nginx` from Debian (`apt-get install -y wrk nginx-light`) and installs
nothing itself. Everything runs on loopback, wrk pinned to one CPU and every server to another
(`taskset`; the modelyard process's threads with `sched_setaffinity`), as DESIGN.md's "How to
measure" says. What it measures, in one run:

1. Three paths to one fixed-response upstream (nginx, one worker, answering every POST with
   `{"predictions":[0]}`), interleaved round by round so that noise hits them alike:
   - direct:  wrk -> upstream `POST /predict`;
   - nginx:   wrk -> nginx reverse proxy (one worker, keep-alive pool of 64) -> upstream;
   - gateway: wrk -> `modelyard serve` `POST /models/bench/predict` -> upstream `/predict`.
   wrk POSTs a 200-byte JSON body with one thread at 1, 16 and 64 connections, 10 s each, and
   gives req/s, p50 and p99 (its `--latency` distribution). From these: the gateway's throughput
   as a share of direct and of nginx, and the latency it adds at concurrency 1.
2. In front of BentoML (skipped by --quick): the iris example's v1 under `bentoml serve`, called
   directly (`POST /classify`) and through the gateway (`POST /models/iris/classify`) at
   concurrency 1 and 8, 5 s each; the gateway's share of the end-to-end p50, (gw - direct) / gw.

Targets are reported as PASS/MISS; a miss does not fail the run (shared machines are noisy).
Exit codes: 0 it ran; 1 something failed outright (a non-2xx answer or a socket error counted by
wrk, a server that did not start, a wrong answer); 2 a tool is missing. The JSON report goes to
loadtests/results/gateway-bench.json unless `--out` says otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

import httpx

from modelyard.testing import ModelyardProcess, free_port

REPO: Final = Path(__file__).resolve().parents[1]
DEFAULT_OUT: Final = Path(__file__).parent / "results" / "gateway-bench.json"
PATHS: Final = ("direct", "nginx", "gateway")
PACKAGES: Final = {"wrk": "wrk", "nginx": "nginx-light", "taskset": "util-linux"}  # Debian

FIXED_RESPONSE: Final = '{"predictions":[0]}'
MODEL: Final = "bench"
GATEWAY_PATH: Final = f"/models/{MODEL}/predict"
UPSTREAM_PATH: Final = "/predict"
BODY_BYTES: Final = 200

IRIS_MODEL: Final = "iris"
IRIS_TAG: Final = "iris-classifier:v1"
IRIS_BODY: Final = '{"input_series": [[5.1, 3.5, 1.4, 0.2]]}'
IRIS_APIS: Final = [{"name": "classify", "inputs": ["input_series"]}]

READY_TIMEOUT_S: Final = 15.0  # nginx, and the gateway serving a newly promoted model
BENTO_READY_TIMEOUT_S: Final = 90.0
BUILD_TIMEOUT_S: Final = 600.0
STOP_TIMEOUT_S: Final = 20.0
WRK_GRACE_S: Final = 30.0  # wrk's own run time plus this, or it is killed
WRK_TIMEOUT: Final = "5s"  # a request unanswered this long counts as a wrk timeout error

#: What the run is judged on: a named figure, compared with `op` to `limit`.
TARGETS: Final[dict[str, dict[str, Any]]] = {
    "gateway_rps_c16": {
        "what": "gateway req/s at concurrency 16",
        "op": ">=",
        "limit": 5000,
        "unit": "req/s",
    },
    "added_p50_c1": {
        "what": "gateway p50 - direct p50 at concurrency 1",
        "op": "<=",
        "limit": 0.3,
        "unit": "ms",
    },
    "added_p99_c1": {
        "what": "gateway p99 - direct p99 at concurrency 1",
        "op": "<=",
        "limit": 1.0,
        "unit": "ms",
    },
    "e2e_share_p50_c1": {
        "what": "gateway share of the p50 in front of BentoML, concurrency 1",
        "op": "<",
        "limit": 0.10,
        "unit": "fraction",
    },
    "e2e_share_p50_c8": {
        "what": "gateway share of the p50 in front of BentoML, concurrency 8",
        "op": "<",
        "limit": 0.10,
        "unit": "fraction",
    },
}


class BenchError(RuntimeError):
    """Something failed outright (not merely slow): the run exits 1."""


@dataclass(frozen=True)
class Config:
    duration_s: int  # one wrk measurement
    warmup_s: int  # one wrk warm-up per path before the measured rounds
    concurrencies: tuple[int, ...]
    threads: int
    e2e: bool
    e2e_duration_s: int
    e2e_concurrencies: tuple[int, ...]

    @classmethod
    def full(cls) -> Config:
        return cls(
            duration_s=10,
            warmup_s=2,
            concurrencies=(1, 16, 64),
            threads=1,
            e2e=True,
            e2e_duration_s=5,
            e2e_concurrencies=(1, 8),
        )

    @classmethod
    def quick(cls) -> Config:
        return cls(
            duration_s=2,
            warmup_s=1,
            concurrencies=(1, 16, 64),
            threads=1,
            e2e=False,
            e2e_duration_s=2,
            e2e_concurrencies=(1, 8),
        )


# --- tools and CPUs -------------------------------------------------------------------------


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
        if self.server is None:
            return 0
        moved = 0
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(ProcessLookupError):  # a thread that just ended
                os.sched_setaffinity(int(task.name), {self.server})
                moved += 1
        return moved


def tool_output(command: list[str]) -> str:
    """stdout and stderr of a short command (`nginx -V`, `wrk -v`), whatever its exit code."""
    done = subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)
    return done.stdout + done.stderr


def tool_version(command: list[str]) -> str:
    lines = tool_output(command).strip().splitlines()
    return lines[0].strip() if lines else "unknown"


# --- processes ------------------------------------------------------------------------------


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def children(pid: int) -> list[int]:
    """PIDs whose parent is `pid` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                found.append(int(stat.parent.name))
    return found


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
UPSTREAM_LOCATION: Final = f"""\
            default_type application/json;
            return 200 '{FIXED_RESPONSE}';"""
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


@dataclass(frozen=True)
class Server:
    url: str
    pid: int


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


def stop_nginx(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM (fast shutdown) to the master; if it hangs, SIGKILL its workers, then it."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        for pid in children(proc.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.kill()
        proc.wait(timeout=STOP_TIMEOUT_S)


@contextmanager
def nginx(
    tools: Tools, pin: Pinning, root: Path, location: str, upstream: str = ""
) -> Iterator[Server]:
    """nginx with one worker on the server CPU, on a free loopback port; always stopped."""
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
        stop_nginx(proc)


def expect_success(response: httpx.Response) -> Any:
    if not response.is_success:
        raise BenchError(
            f"{response.request.method} {response.request.url.path} answered"
            f" {response.status_code}: {response.text[:500]}"
        )
    return response.json()


def register(proc: ModelyardProcess, name: str, version: dict[str, Any]) -> int:
    """Create model `name` with one version, promote it to Production; returns its number."""
    headers = {"Authorization": f"Bearer {proc.admin_token}"}
    with httpx.Client(base_url=f"{proc.url}/api/v1", headers=headers, timeout=30.0) as api:
        expect_success(api.post("/models", json={"name": name, "description": "benchmark"}))
        number = int(expect_success(api.post(f"/models/{name}/versions", json=version))["version"])
        stage = {"stage": "Production", "archive_existing": True}
        expect_success(api.post(f"/models/{name}/versions/{number}/stage", json=stage))
    return number


def wait_served(url: str, body: str, version: int) -> httpx.Response:
    """POST until the gateway answers 200 (the route feed has the promotion); checks the headers
    that name what served it."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    last = "no answer"
    headers = {"Content-Type": "application/json"}
    with httpx.Client(timeout=10.0) as client:
        while time.monotonic() < deadline:
            try:
                response = client.post(url, content=body, headers=headers)
            except httpx.TransportError as exc:
                last = repr(exc)
            else:
                if response.status_code == 200:
                    served = response.headers.get("x-modelyard-version")
                    if served != str(version):
                        raise BenchError(
                            f"POST {url}: x-modelyard-version is {served!r}, not {version}"
                            f" (headers: {dict(response.headers)})"
                        )
                    return response
                last = f"{response.status_code}: {response.text[:500]}"
            time.sleep(0.05)
    raise BenchError(f"POST {url} never answered 200 in {READY_TIMEOUT_S:.0f} s; last: {last}")


@contextmanager
def gateway(workdir: Path, pin: Pinning, upstream: Server) -> Iterator[ModelyardProcess]:
    """`modelyard serve` (no deployer) routing model `bench` to the upstream, its threads on the
    server CPU; always stopped. A failure to get there carries the server's log."""
    token = "bench-" + secrets.token_urlsafe(24)
    proc = ModelyardProcess("serve", workdir, token, extra_env={"MODELYARD_DEPLOYER": "none"})
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


# --- BentoML --------------------------------------------------------------------------------


def bento_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IRIS_FAULT_", "BENTOML_"))}
    return {**env, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "true"}


def build_iris_v1() -> Path:
    """The exported v1 bento, built by the example's build script (a no-op when up to date)."""
    out = REPO / ".cache" / "bentos"
    done = subprocess.run(
        [sys.executable, str(REPO / "examples/iris/build.py"), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
        check=False,
        env={**os.environ, "BENTOML_DO_NOT_TRACK": "true"},
    )
    if done.returncode != 0:
        raise BenchError(f"examples/iris/build.py failed ({done.returncode}):\n{done.stderr}")
    archives = [Path(line) for line in done.stdout.splitlines() if line.endswith("-v1.bento")]
    if not archives:
        raise BenchError(f"examples/iris/build.py named no v1 bento: {done.stdout!r}")
    return archives[0]


def stop_bento(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the server's PID; its process group (its own session) is killed only if that
    fails or workers are left behind."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=STOP_TIMEOUT_S)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


@contextmanager
def bento(pin: Pinning, archive: Path, workdir: Path) -> Iterator[Server]:
    """`bentoml serve iris-classifier:v1` on the server CPU, from a fresh BENTOML_HOME."""
    home = workdir / "bentoml-home"
    home.mkdir(parents=True)
    bentoml = [sys.executable, "-m", "bentoml"]
    imported = subprocess.run(
        [*bentoml, "import", str(archive)],
        env=bento_env(home),
        cwd=home,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if imported.returncode != 0:
        raise BenchError(f"bentoml import {archive} failed:\n{imported.stderr[-3000:]}")
    port = free_port()
    log = workdir / "bentoml-serve.log"
    command = [*bentoml, "serve", IRIS_TAG, "--port", str(port), "--host", "127.0.0.1"]
    with open(log, "wb") as output:
        proc = subprocess.Popen(
            pin.server_command(command),
            env=bento_env(home),
            cwd=home,
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/readyz", BENTO_READY_TIMEOUT_S, proc, log)
        yield Server(url=url, pid=proc.pid)
    finally:
        stop_bento(proc)


# --- wrk ------------------------------------------------------------------------------------


def make_body(size: int = BODY_BYTES) -> str:
    """A JSON body of exactly `size` bytes: three iris rows, an id and padding."""
    rows = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]
    base = json.dumps({"input_series": rows, "request_id": "bench-0001", "pad": ""})
    if len(base) > size:
        raise ValueError(f"a body of {size} bytes is too small for {len(base)} bytes of rows")
    return json.dumps(
        {"input_series": rows, "request_id": "bench-0001", "pad": "x" * (size - len(base))}
    )


def lua_script(path: Path, body: str) -> Path:
    """POST `body` as JSON on every request. Non-2xx answers are counted by wrk itself (its
    "Non-2xx or 3xx responses" line): a Lua `response` hook would cost wrk CPU on every answer."""
    if "]==]" in body:
        raise ValueError("the body would end the Lua long string")
    path.write_text(
        "-- written by loadtests/gateway_bench.py\n"
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
        raise BenchError(f"wrk completed no request:\n{output}")
    return WrkResult(int(requests.group(1)), float(rps.group(1)), percentiles[50], percentiles[99])


def wrk(
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
    except BenchError as exc:
        raise BenchError(f"POST {url}, {connections} connections: {exc}") from exc


def measure_rounds(
    tools: Tools,
    pin: Pinning,
    targets: dict[str, str],
    script: Path,
    concurrencies: Sequence[int],
    seconds: int,
    warmup_s: int,
    threads: int,
) -> dict[str, dict[str, Any]]:
    """Warm every path up, then for each concurrency measure every path in turn. A path that
    fails gets {"error": ...} and is not measured again; the others go on."""
    runs: dict[str, dict[str, Any]] = {path: {} for path in targets}
    live = dict(targets)

    def one(path: str, connections: int, duration: int) -> WrkResult | None:
        try:
            return wrk(tools, pin, live[path], script, connections, duration, threads)
        except BenchError as exc:
            say(f"[{path}] FAILED: {exc}")
            runs[path] = {"error": str(exc)}
            del live[path]
            return None

    for path in list(live):
        say(f"[{path}] warm-up {warmup_s} s at c{max(concurrencies)}")
        one(path, max(concurrencies), warmup_s)
    for connections in concurrencies:
        for path in list(live):
            result = one(path, connections, seconds)
            if result is not None:
                runs[path][f"c{connections}"] = result.summary()
                say(
                    f"[{path}] c{connections}: {result.rps:,.0f} req/s,"
                    f" p50 {result.p50_ms:.3f} ms, p99 {result.p99_ms:.3f} ms"
                )
    return runs


# --- the two parts --------------------------------------------------------------------------


def cell(runs: dict[str, Any], path: str, conc: str, key: str) -> float | None:
    found = (runs.get(path) or {}).get(conc)
    return None if found is None else float(found[key])


def ratios(runs: dict[str, Any], concurrencies: Sequence[int]) -> dict[str, Any]:
    def share(over: str) -> dict[str, float | None]:
        out: dict[str, float | None] = {}
        for c in concurrencies:
            gw, base = cell(runs, "gateway", f"c{c}", "rps"), cell(runs, over, f"c{c}", "rps")
            out[f"c{c}"] = None if gw is None or not base else round(gw / base, 4)
        return out

    def added(key: str) -> float | None:
        gw, direct = cell(runs, "gateway", "c1", key), cell(runs, "direct", "c1", key)
        return None if gw is None or direct is None else round(gw - direct, 4)

    return {
        "throughput_gateway_over_direct": share("direct"),
        "throughput_gateway_over_nginx": share("nginx"),
        "added_latency_c1": {"p50_ms": added("p50_ms"), "p99_ms": added("p99_ms")},
    }


def bench_e2e(
    cfg: Config, tools: Tools, pin: Pinning, yard: ModelyardProcess, workdir: Path
) -> dict[str, Any]:
    say("[e2e] building (or finding) the iris bentos")
    archive = build_iris_v1()
    with bento(pin, archive, workdir) as server:
        say(f"[e2e] {IRIS_TAG} ready at {server.url}")
        apis = {"endpoint": server.url, "apis": IRIS_APIS}
        version = register(yard, IRIS_MODEL, apis)
        wait_served(f"{yard.url}/models/{IRIS_MODEL}/classify", IRIS_BODY, version)
        if yard.proc is not None:
            pin.pin_threads(yard.proc.pid)  # threads started since, if any
        targets = {
            "direct": f"{server.url}/classify",
            "gateway": f"{yard.url}/models/{IRIS_MODEL}/classify",
        }
        script = lua_script(workdir / "iris.lua", IRIS_BODY)
        runs = measure_rounds(
            tools,
            pin,
            targets,
            script,
            cfg.e2e_concurrencies,
            cfg.e2e_duration_s,
            cfg.warmup_s,
            cfg.threads,
        )
    share: dict[str, float | None] = {}
    added: dict[str, float | None] = {}
    for c in cfg.e2e_concurrencies:
        gw = cell(runs, "gateway", f"c{c}", "p50_ms")
        direct = cell(runs, "direct", f"c{c}", "p50_ms")
        if gw is None or direct is None:
            added[f"c{c}"] = share[f"c{c}"] = None
        else:
            added[f"c{c}"] = round(gw - direct, 4)
            share[f"c{c}"] = round((gw - direct) / gw, 4)
    return {
        "model": IRIS_TAG,
        "body": IRIS_BODY,
        **runs,
        "added_p50_ms": added,
        "gateway_share_p50": share,
    }


def judge(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    runs, r, e2e = report["runs"], report["ratios"], report["e2e"]
    shares = e2e.get("gateway_share_p50", {})
    values: dict[str, float | None] = {
        "gateway_rps_c16": cell(runs, "gateway", "c16", "rps"),
        "added_p50_c1": r["added_latency_c1"]["p50_ms"],
        "added_p99_c1": r["added_latency_c1"]["p99_ms"],
        "e2e_share_p50_c1": shares.get("c1"),
        "e2e_share_p50_c8": shares.get("c8"),
    }
    judged: dict[str, dict[str, Any]] = {}
    for name, target in TARGETS.items():
        value = values[name]
        passed: bool | None = None
        if value is not None:
            limit = target["limit"]
            passed = {">=": value >= limit, "<=": value <= limit, "<": value < limit}[target["op"]]
        judged[name] = {**target, "value": value, "pass": passed}
    return judged


def machine(tools: Tools, pin: Pinning) -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_1m_at_start": round(os.getloadavg()[0], 2),
        "wrk": tool_version([tools.wrk, "-v"]),
        "nginx": tool_version([tools.nginx, "-v"]),
        "client_cpu": pin.client,
        "server_cpu": pin.server,
    }


def run(cfg: Config, tools: Tools) -> dict[str, Any]:
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
            upstream = stack.enter_context(nginx(tools, pin, work / "upstream", UPSTREAM_LOCATION))
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
        try:
            say("[gateway] starting modelyard serve")
            yard = stack.enter_context(gateway(work / "yard", pin, upstream))
            targets["gateway"] = yard.url + GATEWAY_PATH
        except Exception as exc:  # reported verbatim; direct and nginx are still measured
            say(f"[gateway] FAILED:\n{traceback.format_exc()}")
            report["runs"]["gateway"] = {"error": f"{type(exc).__name__}: {exc}"}
        script = lua_script(work / "post.lua", make_body())
        measured = measure_rounds(
            tools,
            pin,
            targets,
            script,
            cfg.concurrencies,
            cfg.duration_s,
            cfg.warmup_s,
            cfg.threads,
        )
        report["runs"] = {path: report["runs"].get(path, measured.get(path)) for path in PATHS}
        report["ratios"] = ratios(report["runs"], cfg.concurrencies)
        if not cfg.e2e:
            report["e2e"] = {"skipped": "--quick"}
        elif yard is None or "error" in report["runs"]["gateway"]:
            report["e2e"] = {"skipped": "the gateway leg failed"}
        else:
            try:
                report["e2e"] = bench_e2e(cfg, tools, pin, yard, work / "e2e")
            except Exception as exc:  # reported, and makes the exit code 1
                say(f"[e2e] FAILED:\n{traceback.format_exc()}")
                report["e2e"] = {"error": f"{type(exc).__name__}: {exc}"}
    report["targets"] = judge(report)
    return report


# --- report ---------------------------------------------------------------------------------


def failed(report: dict[str, Any]) -> bool:
    e2e = report.get("e2e", {})
    return (
        "error" in report
        or any("error" in found for found in report["runs"].values())
        or "error" in e2e
        or any("error" in e2e.get(path, {}) for path in ("direct", "gateway"))
    )


def _first_line(error: str) -> str:
    lines = [line.strip() for line in error.splitlines() if line.strip()]
    return (lines[0] if lines else "?")[:200] + " (details on stderr and in the JSON report)"


def _run_lines(
    runs: dict[str, Any], paths: Sequence[str], concurrencies: Sequence[int]
) -> list[str]:
    """One row per concurrency and path; a path that failed gets one ERROR line at the end."""
    lines = []
    for c in concurrencies:
        for path in paths:
            r = (runs.get(path) or {}).get(f"c{c}")
            if r is not None:
                lines.append(
                    f"{path:<10}{c:>5}{r['rps']:>12,.0f}{r['p50_ms']:>10.3f}{r['p99_ms']:>10.3f}"
                )
    for path in paths:
        found = runs.get(path) or {}
        if "error" in found:
            lines.append(f"{path:<10}ERROR: {_first_line(found['error'])}")
    return lines


VALUE_FORMAT: Final = {"req/s": ",.0f", "ms": ".3f", "fraction": ".1%"}


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def table(report: dict[str, Any]) -> str:
    cfg, m = report["config"], report["machine"]
    pinning = (
        f"wrk on CPU {m['client_cpu']}, servers on CPU {m['server_cpu']}"
        if m["server_cpu"] is not None
        else "not pinned (one CPU)"
    )
    head = f"{'path':<10}{'conc':>5}{'req/s':>12}{'p50 ms':>10}{'p99 ms':>10}"
    lines = [
        f"{m['cpus']} CPUs, load {m['loadavg_1m_at_start']}, {pinning};"
        f" {cfg['duration_s']} s a run, {cfg['body_bytes']}-byte POST",
    ]
    if "error" in report:
        return "\n".join([*lines, f"ERROR: {_first_line(report['error'])}"])
    lines += [head, "-" * len(head)]
    lines += _run_lines(report["runs"], PATHS, cfg["concurrencies"])
    r = report["ratios"]
    lines.append("")
    for over in ("direct", "nginx"):
        shares = r[f"throughput_gateway_over_{over}"]
        text = "  ".join(f"{c} {_num(v, '.3f')}" for c, v in shares.items())
        lines.append(f"gateway/{over + ' req/s:':<14}{text}")
    added = r["added_latency_c1"]
    lines.append(
        f"added by the gateway at c1: p50 {_num(added['p50_ms'], '+.3f')} ms,"
        f" p99 {_num(added['p99_ms'], '+.3f')} ms"
    )
    e2e = report["e2e"]
    lines.append("")
    if "skipped" in e2e:
        lines.append(f"in front of BentoML: skipped ({e2e['skipped']})")
    elif "error" in e2e:
        lines.append(f"in front of BentoML: ERROR: {_first_line(e2e['error'])}")
    else:
        lines += [f"in front of BentoML ({e2e['model']}, {cfg['e2e_duration_s']} s a run)", head]
        lines += _run_lines(e2e, ("direct", "gateway"), cfg["e2e_concurrencies"])
        for c, share in e2e["gateway_share_p50"].items():
            added = e2e["added_p50_ms"][c]
            lines.append(
                f"gateway's share of the p50 at {c}: {_num(share, '.1%')}"
                f" ({_num(added, '+.3f')} ms)"
            )
    rules = {
        name: f"{t['what']} {t['op']} {t['limit']:g} {t['unit']}"
        for name, t in report["targets"].items()
    }
    width = max(map(len, rules.values())) + 2
    lines += ["", f"{'target':<{width}}{'value':>10}  result"]
    for name, t in report["targets"].items():
        verdict = "-" if t["pass"] is None else ("PASS" if t["pass"] else "MISS")
        value = _num(t["value"], VALUE_FORMAT[t["unit"]])
        lines.append(f"{rules[name]:<{width}}{value:>10}  {verdict}")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.gateway_bench",
        description=__doc__.splitlines()[0] if __doc__ else None,
    )
    parser.add_argument("--quick", action="store_true", help="2 s runs, no BentoML (smoke test)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON report path")
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
    report = run(Config.quick() if args.quick else Config.full(), tools)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(table(report))
    print(f"\nreport: {args.out}")
    return 1 if failed(report) else 0


if __name__ == "__main__":
    raise SystemExit(main())
