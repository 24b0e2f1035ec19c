"""The local deployer's failure paths that need no running BentoML: a bad archive is reported
on the deployment (never a silent dead task), and stopping cleans up its folder."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

from adapters.bentoml_local import LocalBentoServers
from adapters.local_artifacts import LocalArtifactStore
from registry.catalog.domain import ModelVersion, Stage, VersionStatus
from registry.ports import ServerState
from tests.integration.bentos import write_bento

NOW = datetime(2026, 11, 26, tzinfo=UTC)


def version(uri: str, digest: str) -> ModelVersion:
    return ModelVersion(
        "iris",
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
