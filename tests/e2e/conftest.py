"""Real modelyard processes on real stores."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from modelyard.processes import ModelyardProcess

Factory = Callable[..., ModelyardProcess]


@pytest.fixture
def admin_token() -> str:
    return "e2e-" + secrets.token_urlsafe(24)


@pytest.fixture
def server(store_url: str, tmp_path: Path, admin_token: str) -> Iterator[Factory]:
    """Build (not start) `modelyard registry` processes on this test's store; all are stopped
    at the end. Several built by one test share the store (replicas)."""
    made: list[ModelyardProcess] = []
    url = "" if store_url.startswith("sqlite") else store_url

    def build(role: str = "registry", **env: str) -> ModelyardProcess:
        proc = ModelyardProcess(
            role, tmp_path / "data", admin_token, database_url=url, extra_env=env
        )
        made.append(proc)
        return proc

    try:
        yield build
    finally:
        for proc in made:
            proc.stop()


@pytest.fixture
def replicas(pg_url: str, tmp_path: Path, admin_token: str) -> Iterator[list[ModelyardProcess]]:
    """Two registry processes on one PostgreSQL database, stopped whatever happens."""
    procs = [ModelyardProcess("registry", tmp_path / f"r{i}", admin_token, pg_url) for i in (1, 2)]
    with running(procs):
        yield procs


@contextlib.contextmanager
def running(procs: list[ModelyardProcess]) -> Iterator[list[ModelyardProcess]]:
    """Start every process (in order), stop them all on the way out whatever happens."""
    try:
        for proc in procs:
            proc.start()
        yield procs
    finally:
        for proc in procs:
            proc.stop()


@pytest.fixture(scope="session")
def iris_bentos() -> tuple[Path, Path]:
    """The iris example's exported bentos (v1, v2) under <repo>/.cache/bentos, built once by
    examples/iris/build.py (which does nothing when they are newer than the example's sources)."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [
            sys.executable,
            str(repo / "examples/iris/build.py"),
            "--out",
            str(repo / ".cache/bentos"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(f"building the iris bentos failed ({done.returncode}):\n{done.stderr}")
    v1, v2 = (Path(line) for line in done.stdout.splitlines())
    return v1, v2
