"""The local deployer's failure paths that need no running BentoML: a bad archive is reported
on the deployment (never a silent dead task), and stopping cleans up its folder."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from adapters.bentoml_local import LocalBentoServers
from adapters.local_artifacts import LocalArtifactStore
from adapters.model_folder import model_folder
from registry.catalog.domain import MAX_NAME, ModelVersion, Stage, VersionStatus
from registry.ports import ServerState
from tests.integration.bentos import write_bento

NOW = datetime(2026, 11, 26, tzinfo=UTC)


def version(uri: str, digest: str, model: str = "iris") -> ModelVersion:
    return ModelVersion(
        model,
        1,
        Stage.PRODUCTION,
        VersionStatus.READY,
        "",
        uri,
        digest,
        1,
        "bento",
        "iris_classifier:abc123",
        [],
        None,
        None,
        None,
        {},
        {},
        {},
        "t",
        NOW,
        NOW,
        1,
    )


async def chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def settled(servers: LocalBentoServers) -> ServerState:
    for _ in range(200):
        state = servers.states()[0]
        if state.status not in ("preparing", "starting"):
            return state
        await asyncio.sleep(0.01)
    raise AssertionError(f"still {servers.states()}")


async def test_a_corrupt_archive_marks_the_deployment_failed(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path, b"k" * 32, "http://127.0.0.1:1")
    stored = await store.put("iris", chunks(write_bento(tmp_path / "a.bento").read_bytes()))
    Path(stored.uri.removeprefix("file://")).write_bytes(b"tampered")
    servers = LocalBentoServers(tmp_path / "servers", store)
    try:
        servers.ensure(version(stored.uri, stored.digest))
        state = await settled(servers)
        assert state.status == "failed" and state.endpoint is None
        assert state.detail is not None and stored.digest in state.detail
    finally:
        await servers.close()
    assert servers.states() == []
    assert not (tmp_path / "servers" / "iris" / "1").exists()


async def test_a_missing_archive_marks_the_deployment_failed(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path, b"k" * 32, "http://127.0.0.1:1")
    gone = (tmp_path / "artifacts" / "iris" / ("0" * 32 + ".bento")).as_uri()
    servers = LocalBentoServers(tmp_path / "servers", store)
    try:
        servers.ensure(version(gone, "sha256:" + "0" * 64))
        state = await settled(servers)
        assert state.status == "failed" and "does not exist" in (state.detail or "")
    finally:
        await servers.close()


@pytest.mark.parametrize(
    "name",
    [
        "m" * MAX_NAME,
        "модель " * (MAX_NAME // 7) + "м" * (MAX_NAME % 7),
        "churn model (eu)",
        ".hidden",
    ],
    ids=["256-ascii", "256-cyrillic", "spaces", "dot"],
)
async def test_any_valid_name_gets_a_server_folder(tmp_path: Path, name: str) -> None:
    """A model server's folder is named as its artifacts' (adapters/model_folder.py): 256
    characters, 476 bytes of Cyrillic, spaces or dots never make an invalid or escaping path.
    The archive is tampered with, so the deployer stops at its digest check, after the folder
    was made (a name too long for one failed there before: ENAMETOOLONG)."""
    store = LocalArtifactStore(tmp_path, b"k" * 32, "http://127.0.0.1:1")
    stored = await store.put(name, chunks(write_bento(tmp_path / "a.bento").read_bytes()))
    Path(stored.uri.removeprefix("file://")).write_bytes(b"tampered")
    servers = LocalBentoServers(tmp_path / "servers", store)
    try:
        servers.ensure(version(stored.uri, stored.digest, name))
        state = await settled(servers)
        assert state.status == "failed" and stored.digest in (state.detail or ""), state
        made = [p for p in (tmp_path / "servers").iterdir()]
        assert [p.name for p in made] == [model_folder(name)]
        assert (made[0] / "1").is_dir()
    finally:
        await servers.close()
    assert not (tmp_path / "servers" / model_folder(name) / "1").exists()
