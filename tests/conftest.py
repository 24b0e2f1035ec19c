"""Shared fixtures: real stores (SQLite file, PostgreSQL database of the test's own)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from adapters.sql.store import SqlStore, open_metadata_store
from loadtests.postgres import fresh_postgres_database, postgres_available

STORES = ["sqlite", "postgres"]

# MLflow 3 starts a usage-telemetry client (it fetches a config from the vendor) when `mlflow`
# is first imported, here at collection, unless told not to: the tests reach loopback only.
# Child processes (an `mlflow server`, a documented block) inherit it.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def _require_postgres() -> None:
    reason = postgres_available()
    if reason is None:
        return
    if os.environ.get("MODELYARD_REQUIRE_POSTGRES"):
        pytest.fail(f"PostgreSQL is required here (MODELYARD_REQUIRE_POSTGRES): {reason}")
    pytest.skip(reason)


@pytest.fixture
def pg_url() -> Iterator[str]:
    _require_postgres()
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture(params=STORES)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'modelyard.db'}"
        return
    _require_postgres()
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[SqlStore]:
    opened = await open_metadata_store(store_url)
    try:
        yield opened
    finally:
        await opened.close()


# A real S3 server (moto, its own process), shared by integration and e2e tests.
from tests.s3 import moto_s3, s3_bucket  # noqa: E402, F401


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 1 MiB file system (tmpfs) that fills up, for disk-full paths. Needs root."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
