"""The iris example (v1 unless told) under a real `bentoml serve`, for the benchmarks: built by
the example's build script, imported into a fresh BENTOML_HOME, on a free loopback port, on the
server CPU, and always stopped by PID (its workers live in sessions of their own)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Final

from adapters.net import free_port
from adapters.process_tree import descendants
from loadtests.benchkit import BenchError, Pinning, Server, terminate, wait_http

REPO: Final = Path(__file__).resolve().parents[1]
IRIS_TAG: Final = "iris-classifier:v1"
BENTO_READY_TIMEOUT_S: Final = 90.0
BUILD_TIMEOUT_S: Final = 600.0


def bento_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IRIS_FAULT_", "BENTOML_"))}
    return {**env, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "true"}


def build_iris_v1() -> Path:
    """The exported v1 bento, built by the example's build script (a no-op when up to date)."""
    return build_iris()["v1"]


def build_iris() -> dict[str, Path]:
    """Both exported bentos by variant (v1, v2), built by the example's build script."""
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
    archives = {Path(line).stem.removeprefix("iris-"): Path(line) for line in done.stdout.split()}
    if set(archives) != {"v1", "v2"}:
        raise BenchError(f"examples/iris/build.py named no v1 and v2 bentos: {done.stdout!r}")
    return archives


def stop_bento(proc: subprocess.Popen[bytes], workers: Sequence[int]) -> None:
    """SIGTERM to the server's PID and wait; then SIGKILL to its process group and to any of
    its workers (which live in sessions of their own) still alive."""
    known = {*workers, *descendants(proc.pid)}
    terminate(proc, known)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


@contextmanager
def bento(pin: Pinning, archive: Path, workdir: Path, tag: str = IRIS_TAG) -> Iterator[Server]:
    """`bentoml serve TAG` (iris-classifier:v1 unless told) from a fresh BENTOML_HOME, started on
    the server CPU (its workers inherit it); always stopped."""
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
    command = [*bentoml, "serve", tag, "--port", str(port), "--host", "127.0.0.1"]
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
    workers: list[int] = []
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/readyz", BENTO_READY_TIMEOUT_S, proc, log)
        workers = descendants(proc.pid)
        yield Server(url=url, pid=proc.pid)
    finally:
        stop_bento(proc, workers)
