"""Registering a version from a Bento archive: spool, inspect, store, record.

The upload is spooled to a temp file (memory stays bounded, the sha256 is computed on the way),
inspected (is it a Bento, are its models inside), streamed to the artifact store, and only then
recorded as a version. Whatever fails, nothing is half-registered: the temp file is always
removed and a stored object that did not become a version is deleted again.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Final

from msgspec.structs import asdict, replace

from registry.catalog.changes import Caller
from registry.catalog.commands import ApiInput, VersionCreate, VersionMeta
from registry.catalog.domain import ModelVersion
from registry.catalog.service import Registry
from registry.errors import ArtifactCorrupt, InsufficientStorage, PayloadTooLarge
from registry.ports import ArtifactStore, BentoInspector

CHUNK: Final = 1024 * 1024


class Spooled:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.sha256 = hashlib.sha256()
        self.size = 0

    @property
    def digest(self) -> str:
        return "sha256:" + self.sha256.hexdigest()


@asynccontextmanager
async def spooled(
    body: AsyncIterator[bytes], folder: Path, max_bytes: int
) -> AsyncIterator[Spooled]:
    """Write `body` to a temp file in `folder`; removed on the way out, whatever happens."""
    fd, name = tempfile.mkstemp(prefix="upload-", suffix=".bento", dir=folder)
    spool = Spooled(Path(name))
    try:
        with os.fdopen(fd, "wb") as out:
            async for chunk in body:
                spool.size += len(chunk)
                if spool.size > max_bytes:
                    raise PayloadTooLarge(f"the archive is larger than the {max_bytes}-byte limit")
                spool.sha256.update(chunk)
                await asyncio.to_thread(out.write, chunk)
        yield spool
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise InsufficientStorage(f"no space left to receive the upload in {folder}") from exc
        raise
    finally:
        await asyncio.to_thread(spool.path.unlink, missing_ok=True)


async def file_chunks(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as source:
        while chunk := await asyncio.to_thread(source.read, CHUNK):
            yield chunk


class Registration:
    def __init__(
        self,
        registry: Registry,
        artifacts: ArtifactStore,
        inspect: BentoInspector,
        spool_dir: Path,
        max_bytes: int,
    ) -> None:
        self.registry = registry
        self.artifacts = artifacts
        self.inspect = inspect
        self.spool_dir = spool_dir
        spool_dir.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes

    async def register_bento(
        self, caller: Caller, name: str, body: AsyncIterator[bytes], meta: VersionMeta
    ) -> ModelVersion:
        await self.registry.get_model(name)  # a missing model is refused before the upload
        async with spooled(body, self.spool_dir, self.max_bytes) as spool:
            info = await asyncio.to_thread(self.inspect, spool.path)
            stored = await self.artifacts.put(name, file_chunks(spool.path))
        if (stored.digest, stored.size_bytes) != (spool.digest, spool.size):
            await self.artifacts.delete(stored.uri)
            raise ArtifactCorrupt(
                f"the store recorded {stored.digest} ({stored.size_bytes} bytes) for an upload of"
                f" {spool.digest} ({spool.size} bytes)"
            )
        if caller.fingerprint is not None:  # the body is part of what a replay must match
            combined = hashlib.sha256(f"{caller.fingerprint}\n{spool.digest}".encode()).hexdigest()
            caller = replace(caller, fingerprint=combined)
        cmd = VersionCreate(
            **asdict(meta),
            artifact_uri=stored.uri,
            digest=stored.digest,
            size_bytes=stored.size_bytes,
            format="bento",
            bento_tag=info.tag,
            apis=[ApiInput(api.name, list(api.inputs)) for api in info.apis],
        )
        try:
            version = await self.registry.create_version(caller, name, cmd)
        except BaseException:
            await self.artifacts.delete(stored.uri)
            raise
        if version.artifact_uri != stored.uri:  # an idempotent replay: the first upload stands
            await self.artifacts.delete(stored.uri)
        return version
