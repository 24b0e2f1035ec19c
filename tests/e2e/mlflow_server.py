"""A real `mlflow server` (the full `mlflow` package) for tests: its backend store (SQLite) and
artifacts in a directory of the test's own, a free loopback port, ready when /health answers,
stopped with every process it started (the CLI runs uvicorn as a child)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import httpx

from adapters.net import free_port
from adapters.process_tree import alive, descendants, kill_all

READY_TIMEOUT_S = 120.0  # measured here: 12-16 s on a quiet machine; far more under load
QUIET = {
    "MLFLOW_DISABLE_TELEMETRY": "true",  # no usage reports (the tests reach loopback only)
    "DO_NOT_TRACK": "true",
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",  # no job-runner process besides the server
}


@dataclass
class MlflowServer:
    """A spawned server; `ready()` waits for it (so a test module can start it first and do
    other things while it boots)."""

    root: Path
    port: int
    proc: subprocess.Popen[bytes]
    started: float
    ready_s: float | None = None  # seconds from spawn to the first 200 from /health

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        path = self.root / "server.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def ready(self, timeout: float = READY_TIMEOUT_S) -> str:
        """The server's URL, once /health answers 200."""
        if self.ready_s is not None:
            return self.url
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < self.started + timeout:
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"mlflow server exited with {self.proc.returncode}: {self.log()}"
                    )
                try:
                    if client.get(f"{self.url}/health").status_code == 200:
                        self.ready_s = time.monotonic() - self.started
                        return self.url
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
        raise TimeoutError(f"mlflow server not ready after {timeout}s: {self.log()}")


def mlflow_command(root: Path, port: int) -> list[str]:
    """The command a user runs, as the docs give it, with the test's paths and port."""
    return [
        *(sys.executable, "-m", "mlflow", "server"),
        *("--host", "127.0.0.1", "--port", str(port), "--workers", "1"),
        *("--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}"),
        *("--artifacts-destination", str(root / "artifacts")),
    ]


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the server's process group, SIGKILL to whatever of it is left after 15 s."""
    family = [proc.pid, *descendants(proc.pid)]
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=15)
    deadline = time.monotonic() + 5
    while any(alive(p) for p in family) and time.monotonic() < deadline:
        time.sleep(0.05)
    kill_all([p for p in family if alive(p)])
    with suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


@contextmanager
def mlflow_server(root: Path) -> Iterator[MlflowServer]:
    """Spawn `mlflow server` (not waiting for it: call `ready()`); stop it on the way out."""
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    with open(root / "server.log", "ab") as log:
        proc = subprocess.Popen(
            mlflow_command(root, port),
            cwd=root,
            env={**os.environ, **QUIET},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped whole, by its PID
        )
        try:
            yield MlflowServer(root, port, proc, time.monotonic())
        finally:
            _stop(proc)
