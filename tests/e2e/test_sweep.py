"""The sweeper on real `modelyard registry` processes: kill -9 during `.bento` uploads leaves
spool and temporary files (and maybe artifacts no version names); after a restart the sweep
removes them and every acknowledged upload is intact. With two replicas sharing the data
folder, one sweeping never touches the other's upload in progress."""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from modelyard.processes import ModelyardProcess
from tests.e2e.conftest import Factory, running
from tests.integration.bentos import write_bento

pytestmark = pytest.mark.e2e

PAYLOAD = 24 * 1024 * 1024  # big enough that a kill lands mid-upload
WRITERS = 4
KILLS = 3
ACKS_BEFORE_KILL = 3  # acknowledged uploads in each round before the kill
MIN_AGE_S = 10.0  # the age setting, low for the test (default: an hour)
DEADLINE_S = 120.0
OCTET = {"Content-Type": "application/octet-stream"}


def archive(folder: Path, n: int, padding: int = PAYLOAD) -> tuple[Path, str]:
    """A plain-tar Bento of its own size (so of its own digest), and that digest."""
    path = write_bento(folder / f"w{n}.bento", compression="", padding=padding + n)
    return path, "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


async def chunks(
    path: Path, pause: Callable[[], Awaitable[None]] | None = None
) -> AsyncIterator[bytes]:
    """The file in 1 MiB chunks; `pause()` is awaited half-way (a slow client)."""
    data = path.read_bytes()
    half = len(data) // 2
    for start in range(0, len(data), 1 << 20):
        if pause is not None and start >= half:
            await pause()
            pause = None
        yield data[start : start + (1 << 20)]


def leftovers(data: Path) -> list[Path]:
    """Spool files and the local store's temporary files."""
    return [*data.glob("uploads/upload-*.bento"), *data.glob("artifacts/*/.upload-*.tmp")]


def artifact_files(data: Path) -> set[str]:
    return {p.name for p in data.glob("artifacts/*/*.bento")}


async def metric(client: httpx.AsyncClient, url: str, series: str) -> float:
    text = (await client.get(f"{url}/metrics")).text
    found = re.search(rf"^{re.escape(series)} (\S+)$", text, re.MULTILINE)
    return float(found[1]) if found else 0.0


async def sweeps(client: httpx.AsyncClient, proc: ModelyardProcess) -> float:
    return await metric(client, proc.url, "modelyard_registry_sweeps_total")


async def swept(client: httpx.AsyncClient, proc: ModelyardProcess, kind: str) -> float:
    return await metric(client, proc.url, f'modelyard_registry_swept_total{{kind="{kind}"}}')


async def until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


async def more_sweeps(client: httpx.AsyncClient, proc: ModelyardProcess, n: int) -> None:
    """Return once `proc` has finished `n` more sweeps than now (so n - 1 began after now)."""
    start = await sweeps(client, proc)
    await until(lambda: _at_least(sweeps(client, proc), start + n), f"{n} sweeps")


async def _at_least(value: Awaitable[float], wanted: float) -> bool:
    return await value >= wanted


async def upload_until_killed(
    c: httpx.AsyncClient,
    proc: ModelyardProcess,
    archives: list[tuple[Path, str]],
    acked: dict[int, str],
) -> float:
    """Every writer uploads its archive again and again; after ACKS_BEFORE_KILL 201s, kill -9
    (the other writers are mid-upload then). Returns when the kill happened (monotonic)."""
    api = f"{proc.url}/api/v1/models/iris/versions/bento"
    acks, killed_at = 0, 0.0

    async def writer(path: Path, digest: str) -> None:
        nonlocal acks, killed_at
        while not killed_at:
            try:
                r = await c.post(api, content=chunks(path), headers=OCTET)
            except httpx.TransportError:
                return
            assert r.status_code == 201, r.text
            acked[r.json()["version"]] = digest
            acks += 1
            if acks >= ACKS_BEFORE_KILL and not killed_at:
                proc.kill9()
                killed_at = time.monotonic()

    await asyncio.wait_for(asyncio.gather(*(writer(p, d) for p, d in archives)), 300)
    return killed_at


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
async def test_kill_9_during_uploads_leaves_nothing_after_the_sweep(
    server: Factory, tmp_path: Path, admin_token: str
) -> None:
    proc = server(MODELYARD_SWEEP_MIN_AGE_S=str(MIN_AGE_S), MODELYARD_SWEEP_INTERVAL_S="1")
    data = proc.data_dir
    archives = [archive(tmp_path, n) for n in range(WRITERS)]
    headers = {"Authorization": f"Bearer {admin_token}"}
    acked: dict[int, str] = {}  # version -> the digest of what was sent
    crashed_files = 0  # spool and temporary files the sweeps removed after the kills
    last_kill = 0.0
    async with httpx.AsyncClient(headers=headers, timeout=60) as c:
        for round_ in range(KILLS):
            proc.start()
            await more_sweeps(c, proc, 1)  # the sweep at start has run
            assert leftovers(data) == [], "a crashed upload's files survived the first sweep"
            for kind in ("spool", "temporary"):
                crashed_files += int(await swept(c, proc, kind))
            if round_ == 0:
                assert (await c.post(f"{proc.url}/api/v1/models", json={"name": "iris"})).is_success
            last_kill = await upload_until_killed(c, proc, archives, acked)
        proc.start()
        await more_sweeps(c, proc, 1)
        assert leftovers(data) == [], "a crashed upload's files survived the first sweep"
        for kind in ("spool", "temporary"):
            crashed_files += int(await swept(c, proc, kind))
        # a version deleted: its artifact is one no version names any more
        base = f"{proc.url}/api/v1/models/iris/versions"
        gone = min(acked)
        assert (await c.delete(f"{base}/{gone}")).is_success
        del acked[gone]
        # once everything from before the last kill is older than the age, two more sweeps
        await until(lambda: _elapsed(last_kill, MIN_AGE_S + 1), "the age limit")
        await more_sweeps(c, proc, 2)
        # every version the store holds: also those committed just before a kill whose 201
        # never arrived (not acknowledged, but their artifacts are referenced)
        page = (await c.get(base, params={"limit": 1000})).json()
        assert page["next_cursor"] is None
        stored = {v["version"]: v for v in page["items"]}
        referenced = {v["artifact_uri"].rsplit("/", 1)[-1] for v in stored.values()}
        for version, digest in sorted(acked.items()):
            assert stored[version]["digest"] == digest, version
            link = (await c.get(f"{base}/{version}/download-uri")).json()
            async with httpx.AsyncClient(timeout=60) as plain:  # the link is the credential
                got = await plain.get(link["download_url"])
            assert got.status_code == 200
            assert "sha256:" + hashlib.sha256(got.content).hexdigest() == digest, version
        assert artifact_files(data) == referenced, "an artifact no version names survived"
        orphans = await swept(c, proc, "artifact")
        assert orphans >= 1  # the deleted version's, at least
    assert len(acked) >= KILLS * ACKS_BEFORE_KILL - 1
    print(
        f"\n{len(acked)} acknowledged uploads intact ({len(stored)} versions stored);"
        f" {crashed_files} crashed spool/temporary files and {orphans:.0f} unreferenced"
        " artifacts swept"
    )
    assert crashed_files > 0, "no kill landed mid-upload: the test proved nothing"


def _age(path: Path) -> float:
    return time.time() - path.stat().st_mtime


async def _elapsed(since: float, seconds: float) -> bool:
    return time.monotonic() - since > seconds


async def test_a_sweeping_replica_leaves_another_replicas_upload_alone(
    pg_url: str, tmp_path: Path, admin_token: str
) -> None:
    shared = tmp_path / "shared"  # one data folder: spool and artifacts on shared storage
    quiet = {"MODELYARD_SWEEP_INTERVAL_S": "3600"}  # A sweeps once, at start
    eager = {"MODELYARD_SWEEP_INTERVAL_S": "0.5", "MODELYARD_SWEEP_MIN_AGE_S": "5"}
    uploader, sweeper = procs = [
        ModelyardProcess("registry", shared, admin_token, pg_url, extra_env=env)
        for env in (quiet, eager)
    ]
    path, digest = archive(tmp_path, 0, padding=8 * 1024 * 1024)
    headers = {"Authorization": f"Bearer {admin_token}"}
    spool_seen: list[Path] = []
    with running(procs):
        async with httpx.AsyncClient(headers=headers, timeout=120) as c:

            async def pause() -> None:
                """Half-way: hold until the spool file is older than the age and the other
                replica has swept twice since: only its owner rule can keep it."""

                async def spooling() -> bool:
                    spool_seen[:] = (shared / "uploads").glob("upload-*.bento")
                    return bool(spool_seen)

                async def stale_or_gone() -> bool:
                    return not spool_seen[0].exists() or _age(spool_seen[0]) > 6.0

                await until(spooling, "the upload's spool file")
                await until(stale_or_gone, "a stale spool file")
                assert spool_seen[0].exists(), "the upload's spool file was removed under it"
                await more_sweeps(c, sweeper, 2)
                assert spool_seen[0].exists(), "the upload's spool file was removed under it"

            assert (await c.post(f"{uploader.url}/api/v1/models", json={"name": "iris"})).is_success
            r = await c.post(
                f"{uploader.url}/api/v1/models/iris/versions/bento",
                content=chunks(path, pause),
                headers=OCTET,
            )
            assert r.status_code == 201, r.text
            assert r.json()["digest"] == digest
            assert spool_seen, "the upload's spool file was removed under it"
            assert await swept(c, sweeper, "spool") == 0
            await more_sweeps(c, sweeper, 2)  # and after it, the version's artifact stays
            version = r.json()["version"]
            link = (
                await c.get(f"{sweeper.url}/api/v1/models/iris/versions/{version}/download-uri")
            ).json()
            async with httpx.AsyncClient(timeout=60) as plain:
                got = await plain.get(link["download_url"])
            assert got.status_code == 200
            assert "sha256:" + hashlib.sha256(got.content).hexdigest() == digest
            assert leftovers(shared) == []
