"""A real S3 server for the tests: moto in a process of its own, on a free loopback port
(the fixtures are re-exported by tests/conftest.py).

`moto_s3` (session scope) yields its endpoint URL; `s3_bucket` makes a fresh bucket for one
test. The dummy credentials go to the clients as arguments, the environment is left alone.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, Final

import httpx
import pytest
from aiobotocore.session import get_session

from modelyard.processes import free_port

S3_REGION: Final = "us-east-1"
S3_ACCESS_KEY: Final = "testing"
S3_SECRET_KEY: Final = "testing"
MOTO_READY_TIMEOUT_S: Final = 30.0
MOTO_STOP_TIMEOUT_S: Final = 10.0


def s3_options(endpoint: str) -> dict[str, str]:
    """Keyword arguments of `open_s3_store` for the moto server at `endpoint`."""
    return {
        "endpoint_url": endpoint,
        "region": S3_REGION,
        "access_key_id": S3_ACCESS_KEY,
        "secret_access_key": S3_SECRET_KEY,
    }


def _wait_ready(proc: subprocess.Popen[bytes], url: str, log_path: Path) -> None:
    deadline = time.monotonic() + MOTO_READY_TIMEOUT_S
    with httpx.Client(timeout=1.0) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"moto_server exited: {log_path.read_text()[-2000:]}")
            try:
                client.get(url)  # any HTTP answer means it listens
                return
            except httpx.TransportError:
                time.sleep(0.05)
    raise TimeoutError(f"moto_server not ready after {MOTO_READY_TIMEOUT_S}s")


@contextmanager
def running_moto_server(log_path: Path) -> Iterator[str]:
    """Start `moto_server`, yield its endpoint URL once it answers, stop it by its PID."""
    port = free_port()
    moto = Path(sys.executable).parent / "moto_server"
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [str(moto), "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT
        )
        try:
            url = f"http://127.0.0.1:{port}"
            _wait_ready(proc, url, log_path)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=MOTO_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="session")
def moto_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_moto_server(tmp_path_factory.mktemp("moto") / "moto.log") as url:
        yield url


@asynccontextmanager
async def s3_client(endpoint: str) -> AsyncIterator[Any]:
    """A plain aiobotocore client on the moto server, for setting up and tampering."""
    async with get_session().create_client(
        "s3",
        endpoint_url=endpoint,
        region_name=S3_REGION,
        aws_access_key_id=S3_ACCESS_KEY,
        aws_secret_access_key=S3_SECRET_KEY,
    ) as client:
        yield client


async def create_bucket(endpoint: str) -> str:
    name = f"modelyard-{uuid.uuid4().hex[:16]}"
    async with s3_client(endpoint) as client:
        await client.create_bucket(Bucket=name)
    return name


@pytest.fixture
async def s3_bucket(moto_s3: str) -> str:
    return await create_bucket(moto_s3)
