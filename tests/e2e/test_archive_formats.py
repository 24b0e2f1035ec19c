"""One list of accepted archive formats (adapters/bento_archive.py ARCHIVE_FORMATS): whatever
the registry accepts, the deployer imports and serves with a real `bentoml serve`."""

from __future__ import annotations

import asyncio
import tarfile
import time
from pathlib import Path

import msgspec
import pytest

from adapters.bento_archive import ARCHIVE_FORMATS, ArchiveFormat, read_bento
from adapters.bentoml_local import LocalBentoServers
from adapters.local_artifacts import LocalArtifactStore
from tests.integration.test_local_deployer import chunks, version

pytestmark = pytest.mark.e2e

READY_DEADLINE_S = 180.0


def repack(source: Path, fmt: ArchiveFormat, target: Path) -> Path:
    """The same Bento (an xz tar from `bentoml export`) in `fmt`."""
    write_mode = "w" + fmt.tar_mode[1:]
    with tarfile.open(source, "r:xz") as src, tarfile.open(target, write_mode) as out:
        for member in src:
            out.addfile(member, src.extractfile(member) if member.isfile() else None)
    return target


@pytest.mark.parametrize("fmt", ARCHIVE_FORMATS, ids=lambda f: f.name.replace(" ", "-"))
async def test_the_deployer_serves_every_format_the_registry_accepts(
    fmt: ArchiveFormat, iris_bentos: tuple[Path, Path], tmp_path: Path
) -> None:
    archive = repack(iris_bentos[0], fmt, tmp_path / "upload")
    info = read_bento(archive)  # the registry's check at upload
    store = LocalArtifactStore(tmp_path / "data", b"k" * 32, "http://127.0.0.1:1")
    stored = await store.put("iris", chunks(archive.read_bytes()))
    wanted = msgspec.structs.replace(version(stored.uri, stored.digest), bento_tag=info.tag)
    servers = LocalBentoServers(tmp_path / "servers", store)
    try:
        servers.ensure(wanted)
        deadline = time.monotonic() + READY_DEADLINE_S
        while (state := servers.states()[0]).status in ("preparing", "starting"):
            assert time.monotonic() < deadline, f"not ready in time: {state}"
            await asyncio.sleep(0.1)
        assert state.status == "ready", state.detail
        assert state.endpoint is not None
    finally:
        await servers.close()
