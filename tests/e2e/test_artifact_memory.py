"""A 64 MiB+ upload streams: the peak RSS of the uploading process grows by about one part.

Each store runs in a child process of its own (`child_main` below), so that one measurement's
high-water mark cannot hide another's; the data comes from a deterministic generator and is
never held whole, in the child or here.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import resource
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Final

import pytest

from adapters.local_artifacts import LocalArtifactStore
from adapters.s3_artifacts import open_s3_store
from registry.ports import ArtifactStore
from tests.s3 import create_bucket, running_moto_server, s3_options

pytestmark = pytest.mark.e2e

MIB: Final = 1024 * 1024
TOTAL_BYTES: Final = 64 * MIB + 12_345  # not a multiple of the part size: a short last part
CHUNK_BYTES: Final = 1_000_003  # odd, so parts are cut across chunks
MAX_GROWTH_MIB: Final = 40  # one 8 MiB part plus overhead; holding 64 MiB would exceed it
SEED: Final = 20240611
REPO: Final = Path(__file__).resolve().parents[2]
CHILD: Final = "from tests.e2e.test_artifact_memory import child_main; child_main()"
# Linux keeps the peak RSS across execve, and a child forked from this big pytest process starts
# with pytest's: a small trampoline process starts the measured one, so its peak starts small.
TRAMPOLINE: Final = (
    "import subprocess, sys; sys.exit(subprocess.call([sys.executable, *sys.argv[1:]]))"
)
MAX_HIDDEN_MIB: Final = 16  # the starting peak may exceed the current RSS by this much at most


def generate() -> Iterator[bytes]:
    rng = random.Random(SEED)
    sent = 0
    while sent < TOTAL_BYTES:
        size = min(CHUNK_BYTES, TOTAL_BYTES - sent)
        yield rng.randbytes(size)
        sent += size


async def agenerate() -> AsyncIterator[bytes]:
    for chunk in generate():
        yield chunk


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def current_rss_mib() -> float:
    resident_pages = int(Path("/proc/self/statm").read_text().split()[1])
    return resident_pages * resource.getpagesize() / MIB


async def measure(store: ArtifactStore) -> dict[str, float | str | int]:
    rss_at_start, before = current_rss_mib(), peak_rss_mib()
    stored = await store.put("big", agenerate())
    after_put = peak_rss_mib()
    hasher = hashlib.sha256()
    async for chunk in store.get(stored.uri, stored.digest):
        hasher.update(chunk)
    return {
        "rss_at_start_mib": rss_at_start,
        "before_mib": before,
        "after_put_mib": after_put,
        "after_get_mib": peak_rss_mib(),
        "digest": stored.digest,
        "size": stored.size_bytes,
        "download_digest": f"sha256:{hasher.hexdigest()}",
    }


async def _child(kind: str, target: str, bucket: str) -> dict[str, float | str | int]:
    if kind == "local":
        return await measure(LocalArtifactStore(Path(target), b"key", "http://registry.test"))
    store = await open_s3_store(f"s3://{bucket}/memory", **s3_options(target))
    try:
        return await measure(store)
    finally:
        await store.close()


def child_main() -> None:
    """In the child: `kind target bucket` on argv; prints the measurements as JSON."""
    kind, target, bucket = sys.argv[1:4]
    print(json.dumps(asyncio.run(_child(kind, target, bucket))))


@pytest.fixture(scope="module")
def moto_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_moto_server(tmp_path_factory.mktemp("moto") / "moto.log") as url:
        yield url


@pytest.mark.parametrize("kind", ["local", "s3"])
async def test_upload_and_download_memory_stays_bounded(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    target, bucket = str(tmp_path / "data"), ""
    if kind == "s3":
        target = request.getfixturevalue("moto_endpoint")
        bucket = await create_bucket(target)
    child = await asyncio.create_subprocess_exec(
        *(sys.executable, "-c", TRAMPOLINE, "-c", CHILD, kind, target, bucket),
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(child.communicate(), timeout=300)
    assert child.returncode == 0, err.decode()
    report = json.loads(out)
    print(f"{kind}: {report}")

    expected = hashlib.sha256()
    for chunk in generate():
        expected.update(chunk)
    assert report["size"] == TOTAL_BYTES
    assert report["digest"] == report["download_digest"] == f"sha256:{expected.hexdigest()}"
    assert report["before_mib"] - report["rss_at_start_mib"] < MAX_HIDDEN_MIB, report
    assert report["after_put_mib"] - report["before_mib"] < MAX_GROWTH_MIB, report
    assert report["after_get_mib"] - report["before_mib"] < MAX_GROWTH_MIB, report
