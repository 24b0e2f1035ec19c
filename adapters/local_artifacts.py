"""Artifacts as files under the data folder (the embedded default).

An upload streams into a temp file in the target folder while it is hashed and counted, is
fsynced, then hard-linked to a fresh key `artifacts/<name>/<uuid4hex>.bento` (a link never
replaces an existing file) and the temp name removed. File IO runs off the event loop.
Download links name the artifact by its id alone (the key's `<uuid4hex>`, no path: readers
never learn where the server keeps files), are signed with HMAC-SHA256 and checked by
`verify_local_link`; the server finds the file again (`signed_file`).
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import hmac
import os
import re
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import BinaryIO, Final
from urllib.parse import unquote, urlsplit

from adapters.model_folder import SAFE_SEGMENT, model_folder
from registry.catalog.owner import owner_in, this_process
from registry.catalog.sweep import Kind, Leftover
from registry.errors import (
    ArtifactCorrupt,
    ArtifactNotFound,
    InsufficientStorage,
    InvalidInput,
    PermissionDenied,
)
from registry.ports import StoredArtifact

CHUNK_SIZE: Final = 1024 * 1024  # bytes per read on download and per write on upload
ARTIFACTS_DIR: Final = "artifacts"
LINK_PATH: Final = "/api/v1/artifacts/local/"
KEY_PATTERN: Final = re.compile(rf"{ARTIFACTS_DIR}/{SAFE_SEGMENT.pattern}/[0-9a-f]{{32}}\.bento")
LINK_ID_PATTERN: Final = re.compile(r"[0-9a-f]{32}")
TEMP_PREFIX: Final = ".upload-"
TEMP_SUFFIX: Final = ".tmp"
TEMP_KEY_PATTERN: Final = re.compile(
    rf"{ARTIFACTS_DIR}/{SAFE_SEGMENT.pattern}/\.upload-[A-Za-z0-9._-]{{1,80}}\.tmp"
)
NO_SPACE: Final = frozenset({errno.ENOSPC, errno.EDQUOT})


def verify_digest(uri: str, expected: str, hasher: hashlib._Hash) -> None:
    actual = f"sha256:{hasher.hexdigest()}"
    if actual != expected:
        raise ArtifactCorrupt(f"artifact {uri} is corrupt: expected {expected}, got {actual}")


def _sign(signing_key: bytes, key: str, expires: int) -> str:
    message = f"{key}\n{expires}".encode()
    return hmac.new(signing_key, message, hashlib.sha256).hexdigest()


def verify_local_link(
    signing_key: bytes, link_id: str, expires: int, signature: str, now: float
) -> None:
    """Accept a link made by `LocalArtifactStore.download_url`, or raise. Pure."""
    if not LINK_ID_PATTERN.fullmatch(link_id):
        raise InvalidInput(f"{link_id!r} is not an artifact id", field="key")
    expected = _sign(signing_key, link_id, expires).encode()
    if not hmac.compare_digest(expected, signature.encode()):
        raise PermissionDenied("the download link's signature does not match")
    if now > expires:
        raise PermissionDenied(f"the download link expired at {expires}")


def link_id(key: str) -> str:
    """What a download link names: the uuid of `artifacts/<folder>/<uuid>.bento`."""
    return key.rsplit("/", 1)[-1].removesuffix(".bento")


class _Spool:
    """A temp file next to its final name, hashed and counted as it is written (blocking)."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        owner = this_process()  # in the name, so a sweep knows whether its writer still runs
        prefix = f"{TEMP_PREFIX}{owner}-" if owner else TEMP_PREFIX
        fd, name = tempfile.mkstemp(dir=folder, prefix=prefix, suffix=TEMP_SUFFIX)
        self.path = Path(name)
        self.file = os.fdopen(fd, "wb")
        self.hasher = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes | bytearray) -> None:
        self.hasher.update(data)
        self.file.write(data)
        self.size += len(data)

    def commit(self, target: Path) -> None:
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        os.link(self.path, target)  # FileExistsError rather than overwrite
        self.path.unlink()
        dir_fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def discard(self) -> None:
        with suppress(OSError):
            self.file.close()
        self.path.unlink(missing_ok=True)


@contextmanager
def _no_space_is_insufficient_storage(folder: Path) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        if exc.errno not in NO_SPACE:
            raise
        raise InsufficientStorage(f"no space left for the artifact in {folder}: {exc}") from exc


def _open_read(path: Path) -> BinaryIO:
    return path.open("rb")


def _read_hashed(file: BinaryIO, hasher: hashlib._Hash) -> bytes:
    chunk = file.read(CHUNK_SIZE)
    hasher.update(chunk)
    return chunk


class LocalArtifactStore:
    """ArtifactStore on the local file system; URIs are `file://<absolute path>`."""

    def __init__(self, root: Path, signing_key: bytes, base_url: str) -> None:
        self._root = Path(os.path.abspath(root))
        self._signing_key = signing_key
        self._base_url = base_url.rstrip("/")

    async def put(self, name: str, chunks: AsyncIterator[bytes]) -> StoredArtifact:
        target = self._root / ARTIFACTS_DIR / model_folder(name) / f"{uuid.uuid4().hex}.bento"
        with _no_space_is_insufficient_storage(target.parent):
            spool = await asyncio.to_thread(_Spool, target.parent)
            try:
                await self._fill(spool, chunks)
                await asyncio.to_thread(spool.commit, target)
            except BaseException:
                spool.discard()
                raise
        digest = f"sha256:{spool.hasher.hexdigest()}"
        return StoredArtifact(uri=target.as_uri(), digest=digest, size_bytes=spool.size)

    @staticmethod
    async def _fill(spool: _Spool, chunks: AsyncIterator[bytes]) -> None:
        pending = bytearray()  # small chunks are gathered so each thread hop writes ~CHUNK_SIZE
        async for chunk in chunks:
            pending += chunk
            if len(pending) >= CHUNK_SIZE:
                await asyncio.to_thread(spool.write, pending)
                pending.clear()
        if pending:
            await asyncio.to_thread(spool.write, pending)

    async def get(self, uri: str, digest: str) -> AsyncIterator[bytes]:
        path = self._root / self._key(uri)
        try:
            file = await asyncio.to_thread(_open_read, path)
        except FileNotFoundError as exc:
            raise ArtifactNotFound(f"artifact {uri} does not exist", field="uri") from exc
        hasher = hashlib.sha256()
        try:
            while chunk := await asyncio.to_thread(_read_hashed, file, hasher):
                yield chunk
        finally:
            file.close()
        verify_digest(uri, digest, hasher)

    async def download_url(self, uri: str, expires_s: int) -> str:
        if expires_s <= 0:
            raise InvalidInput("a download link must be valid for at least 1 s", field="expires_s")
        ident = link_id(self._key(uri))
        expires = int(time.time()) + expires_s
        signature = _sign(self._signing_key, ident, expires)
        return f"{self._base_url}{LINK_PATH}{ident}?expires={expires}&signature={signature}"

    def signed_file(self, key: str, expires: int, signature: str) -> Path:
        """The file a download link names (`key`: its artifact id), once its signature and
        expiry check out; ArtifactNotFound when it is gone (blocking: looks in each folder)."""
        verify_local_link(self._signing_key, key, expires, signature, time.time())
        for folder in _entries(self._root / ARTIFACTS_DIR):
            path = folder / f"{key}.bento"
            if path.is_file():
                return path
        raise ArtifactNotFound(f"artifact {key} does not exist", field="key")

    async def delete(self, uri: str) -> None:
        path = self._root / self._key(uri)
        await asyncio.to_thread(path.unlink, missing_ok=True)

    async def leftovers(self) -> list[Leftover]:
        return await asyncio.to_thread(self._list, time.time())

    def _list(self, now: float) -> list[Leftover]:
        found: list[Leftover] = []
        for folder in _entries(self._root / ARTIFACTS_DIR):
            for entry in _entries(folder):
                key = f"{ARTIFACTS_DIR}/{folder.name}/{entry.name}"
                if KEY_PATTERN.fullmatch(key):
                    kind, owner = Kind.ARTIFACT, None
                elif TEMP_KEY_PATTERN.fullmatch(key):
                    kind, owner = Kind.TEMPORARY, owner_in(entry.name)
                else:
                    continue
                try:
                    age = now - entry.stat().st_mtime
                except FileNotFoundError:  # committed or removed meanwhile
                    continue
                found.append(Leftover(kind, entry.as_uri(), age, owner))
        return found

    async def remove(self, leftover: Leftover) -> None:
        if leftover.kind is Kind.ARTIFACT:
            await self.delete(leftover.name)
            return
        path = self._root / self._key(leftover.name, TEMP_KEY_PATTERN)
        await asyncio.to_thread(path.unlink, missing_ok=True)

    def _key(self, uri: str, pattern: re.Pattern[str] = KEY_PATTERN) -> str:
        """`artifacts/<name>/<hex>.bento` for a URI this store made; anything else is refused."""
        parts = urlsplit(uri)
        if parts.scheme != "file" or parts.netloc or parts.query or parts.fragment:
            raise InvalidInput(f"{uri!r} is not a file:// artifact URI", field="uri")
        path = os.path.normpath(unquote(parts.path))
        key = os.path.relpath(path, self._root) if os.path.isabs(path) else ""
        if not pattern.fullmatch(key):
            raise InvalidInput(f"{uri!r} is not an artifact under {self._root}", field="uri")
        return key


def _entries(folder: Path) -> list[Path]:
    """The folder's entries; none when it does not exist (yet, or any more)."""
    try:
        return list(folder.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []
