"""Run modelyard as a real child process and wait until it is ready: used by the demo, the
benchmarks and the end-to-end tests. Not used by the service itself."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Final, Literal

import httpx

from adapters.net import free_port

READY_TIMEOUT_S: Final = 20.0


@dataclass
class ModelyardProcess:
    """`modelyard <role>` on a free loopback port; `start()` returns once /readyz says ok (or,
    with `until="live"`, once the process answers /livez, its model servers maybe starting)."""

    role: str
    data_dir: Path
    admin_token: str
    database_url: str = ""
    port: int = field(default_factory=free_port)
    grpc_port: int = 0  # the gateway's gRPC port (MODELYARD_GRPC_PORT); 0: none
    extra_env: Mapping[str, str] = field(default_factory=dict)
    cwd: Path | None = None  # None: this process's; a checkout's root runs that checkout's code
    proc: subprocess.Popen[bytes] | None = None
    log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def grpc_target(self) -> str:
        """Where gRPC clients connect (tritonclient's `url`): host:port."""
        return f"127.0.0.1:{self.grpc_port}"

    def start(
        self, timeout: float = READY_TIMEOUT_S, until: Literal["ready", "live"] = "ready"
    ) -> float:
        """Start the process; returns the seconds from spawn to a 200 from /readyz (`until`
        "ready": after a restart, its served versions answer too) or /livez ("live")."""
        env = {
            **os.environ,
            "MODELYARD_DATA_DIR": str(self.data_dir),
            "MODELYARD_ADMIN_TOKEN": self.admin_token,
            "MODELYARD_PORT": str(self.port),
            "MODELYARD_GRPC_PORT": str(self.grpc_port),
            "MODELYARD_DATABASE_URL": self.database_url,
            "MODELYARD_LOG_LEVEL": "warning",
            **self.extra_env,
        }
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._close_log()
        self.log = open(self.data_dir / f"server-{self.port}.log", "ab")  # noqa: SIM115
        started = time.perf_counter()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "modelyard", self.role],
            env=env,
            cwd=self.cwd,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        path = "/livez" if until == "live" else "/readyz"
        try:
            wait_ready(self.proc, f"{self.url}{path}", started + timeout)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}: {self.output()}") from None
        except TimeoutError:
            self.stop()
            raise TimeoutError(f"modelyard not ready after {timeout}s: {self.output()}") from None
        return time.perf_counter() - started

    def output(self) -> str:
        path = self.data_dir / f"server-{self.port}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        self._close_log()

    def _close_log(self) -> None:
        if self.log is not None:
            self.log.close()
            self.log = None

    def stop(self) -> None:
        if self.proc is not None:
            terminate(self.proc)
        self._close_log()


def wait_ready(proc: subprocess.Popen[bytes], ready_url: str, deadline: float) -> None:
    """Poll `ready_url` until it answers 200 (RuntimeError if `proc` exits first, TimeoutError
    at `deadline`, a `time.perf_counter()` value)."""
    with httpx.Client(timeout=1.0) as client:
        while time.perf_counter() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"modelyard exited with {proc.returncode}")
            try:
                if client.get(ready_url).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.01)
    raise TimeoutError(f"{ready_url} did not answer 200 in time")


def terminate(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> int:
    """SIGTERM to the process and wait for it; SIGKILL if it is still there after `timeout`.
    Returns its exit status (negative: the signal that ended it)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    return proc.returncode
