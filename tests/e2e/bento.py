"""Real `bentoml serve` processes of the iris example for e2e tests, run as subprocesses and
spoken to over HTTP only (bentoml warns at import, and the suite turns warnings into errors)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from adapters.process_tree import alive, descendants, kill_all
from modelyard.processes import free_port

BENTOML = [sys.executable, "-m", "bentoml"]
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0
V1, V2 = "iris-classifier:v1", "iris-classifier:v2"


@dataclass(frozen=True)
class BentoServer:
    url: str
    startup_s: float
    pid: int

    def crash(self) -> None:
        """SIGKILL to the server and all its processes, as if its machine were lost; returns
        once they are gone and its port refuses connections (a request racing the kill may
        still be reset mid-flight)."""
        # Freeze the tree first: killed one by one, a worker's supervisor could fork a
        # replacement between two kills. Stopped processes fork nothing; list again until no
        # new one appears, then kill them all.
        pids: list[int] = []
        while new := [p for p in [self.pid, *descendants(self.pid)] if p not in pids]:
            kill_all(new, signal.SIGSTOP)
            pids += new
        kill_all(pids)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)
        while any(alive(p) for p in pids):
            assert time.monotonic() < deadline, f"processes {pids} survived SIGKILL"
            time.sleep(0.01)
        # Seen here: with every process gone, the port still accepted connections for a moment
        # (the listening socket outlived them, not in any process's table: `ss` showed no
        # listener) and reset them once the request was sent, which no client can tell from a
        # server that crashed while answering. A lost machine refuses: wait for that.
        port = int(self.url.rsplit(":", 1)[1])
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    pass
            except ConnectionRefusedError:
                return
            except OSError:
                pass
            assert time.monotonic() < deadline, f"port {port} still accepts after the crash"
            time.sleep(0.01)


def bento_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IRIS_FAULT_", "BENTOML_"))}
    return {**env, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "true", **extra}


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the server's PID and wait; its process group and its workers (which live in
    sessions of their own) are killed only if that fails."""
    workers = descendants(proc.pid)
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    with contextlib.suppress(ProcessLookupError):  # workers the arbiter left in its group
        os.killpg(proc.pid, signal.SIGKILL)
    kill_all(workers)


def output(log_path: Path) -> str:
    return log_path.read_text(errors="replace")[-4000:]


@contextlib.contextmanager
def serve(
    home: Path, tag: str, log_dir: Path, fault_env: Mapping[str, str]
) -> Iterator[BentoServer]:
    """`bentoml serve TAG` on a free port; yields once GET /readyz answers 200; always stopped."""
    with serve_many(home, log_dir, [(tag, fault_env)]) as (server,):
        yield server


@contextlib.contextmanager
def serve_many(
    home: Path, log_dir: Path, specs: Sequence[tuple[str, Mapping[str, str]]]
) -> Iterator[list[BentoServer]]:
    """Several `bentoml serve` at once, each `(tag, fault_env)` on a free port: all are started
    before any is waited for (each spends seconds importing), yielded once every one answers
    GET /readyz with 200, and all stopped at the end."""
    started = time.perf_counter()
    procs: list[tuple[subprocess.Popen[bytes], str, str, Path]] = []
    try:
        for tag, fault_env in specs:
            port = free_port()
            log_path = log_dir / f"serve-{tag.replace(':', '-')}-{port}.log"
            command = [*BENTOML, "serve", tag, "--port", str(port), "--host", "127.0.0.1"]
            with open(log_path, "wb") as log:  # the child keeps its own copy of the handle
                proc = subprocess.Popen(
                    command,
                    env=bento_env(home, **fault_env),
                    cwd=log_dir,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            procs.append((proc, tag, f"http://127.0.0.1:{port}", log_path))
        servers = [_ready(proc, tag, url, log_path, started) for proc, tag, url, log_path in procs]
        yield servers
    finally:
        for proc, *_ in procs:
            stop(proc)


def _ready(
    proc: subprocess.Popen[bytes], tag: str, url: str, log_path: Path, started: float
) -> BentoServer:
    with httpx.Client(timeout=2.0) as client:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"{tag} exited with {proc.returncode}:\n{output(log_path)}")
            if time.perf_counter() - started > READY_TIMEOUT_S:
                pytest.fail(f"{tag} not ready in {READY_TIMEOUT_S} s:\n{output(log_path)}")
            try:
                if client.get(f"{url}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
    return BentoServer(url=url, startup_s=time.perf_counter() - started, pid=proc.pid)


def classify(url: str, rows: object) -> tuple[httpx.Response, float]:
    started = time.perf_counter()
    response = httpx.post(f"{url}/classify", json={"input_series": rows}, timeout=30.0)
    return response, time.perf_counter() - started


def make_bento_home(iris_bentos: tuple[Path, Path], home: Path) -> Path:
    """A fresh BentoML home holding both bentos, imported from the exported archives."""
    for archive in iris_bentos:
        subprocess.run(
            [*BENTOML, "import", str(archive)],
            env=bento_env(home),
            cwd=home,
            capture_output=True,
            timeout=120,
            check=True,
        )
    return home
