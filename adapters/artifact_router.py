"""One ArtifactStore over several: new uploads go to the default store, reads go to whichever
store a URI names. A registry that moves from local files to S3 keeps serving the versions it
registered before the move."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from pathlib import Path

from registry.catalog.sweep import Leftover
from registry.errors import InvalidInput
from registry.ports import ArtifactStore, SignedFiles, StoredArtifact


class ArtifactRouter:
    def __init__(self, default: ArtifactStore, by_scheme: Mapping[str, ArtifactStore]) -> None:
        self.default = default
        self.by_scheme = dict(by_scheme)

    def _for(self, uri: str) -> ArtifactStore:
        scheme = uri.split("://", 1)[0]
        store = self.by_scheme.get(scheme)
        if store is None:
            raise InvalidInput(f"no artifact store here reads {scheme}:// URIs", field="uri")
        return store

    async def put(self, name: str, chunks: AsyncIterator[bytes]) -> StoredArtifact:
        return await self.default.put(name, chunks)

    def get(self, uri: str, digest: str) -> AsyncIterator[bytes]:
        return self._for(uri).get(uri, digest)

    async def download_url(self, uri: str, expires_s: int) -> str:
        return await self._for(uri).download_url(uri, expires_s)

    async def delete(self, uri: str) -> None:
        await self._for(uri).delete(uri)

    async def leftovers(self) -> list[Leftover]:
        """Every store's, each store once (the default is also one of `by_scheme`)."""
        stores = {id(s): s for s in (self.default, *self.by_scheme.values())}
        found: list[Leftover] = []
        for store in stores.values():
            found += await store.leftovers()
        return found

    async def remove(self, leftover: Leftover) -> None:
        await self._for(leftover.name).remove(leftover)

    def signed_file(self, key: str, expires: int, signature: str) -> Path:
        local = self.by_scheme.get("file")
        if not isinstance(local, SignedFiles):
            raise InvalidInput("this server keeps no local artifacts", field="key")
        return local.signed_file(key, expires, signature)
