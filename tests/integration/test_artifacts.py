"""One contract for both artifact stores: files under a data folder, and S3 on a moto server."""

from __future__ import annotations

import hashlib
import random
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import httpx
import pytest

from adapters.local_artifacts import LINK_PATH, LocalArtifactStore, verify_local_link
from adapters.model_folder import model_folder
from adapters.s3_artifacts import PART_SIZE, S3ArtifactStore, open_s3_store
from modelyard.processes import free_port
from registry.catalog.domain import MAX_NAME
from registry.catalog.sweep import Kind
from registry.errors import (
    ArtifactCorrupt,
    ArtifactNotFound,
    InsufficientStorage,
    InvalidInput,
    PermissionDenied,
    StoreUnavailable,
)
from registry.ports import ArtifactStore
from tests.s3 import create_bucket, s3_client, s3_options

SIGNING_KEY = b"test-signing-key"
BASE_URL = "http://registry.test"
UNUSED = "0" * 32  # a key part no put ever draws
SIZES = [0, 1000, PART_SIZE, 2 * PART_SIZE + 1]


@dataclass
class Harness:
    """A store plus what the contract needs to reach behind it."""

    kind: str
    store: ArtifactStore
    missing_uri: str  # well-formed, never written
    foreign_uris: list[str]  # not this store's to touch
    tamper: Callable[[str, bytes], Awaitable[None]]  # overwrite the object behind a URI
    fetch: Callable[[str], Awaitable[bytes]]  # follow a download link
    leftovers: Callable[[], Awaitable[list[str]]]  # stored objects, temp files, pending uploads
    crash: Callable[[], Awaitable[None]]  # leave what an upload killed mid-way leaves


def payload(size: int, seed: int = 0) -> bytes:
    return random.Random(f"{seed}-{size}").randbytes(size)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


async def chunked(data: bytes, size: int = 1_000_003) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def read_all(store: ArtifactStore, uri: str, digest: str) -> bytes:
    return b"".join([chunk async for chunk in store.get(uri, digest)])


def local_harness(root: Path) -> Harness:
    store = LocalArtifactStore(root, SIGNING_KEY, BASE_URL)
    database = root / "modelyard.db"  # a neighbour in the data folder that must stay untouched
    database.parent.mkdir(parents=True)
    database.write_bytes(b"not an artifact")

    async def tamper(uri: str, data: bytes) -> None:
        Path(unquote(urlsplit(uri).path)).write_bytes(data)

    async def fetch(url: str) -> bytes:
        assert url.startswith(BASE_URL + LINK_PATH)
        parts = urlsplit(url)
        key = unquote(parts.path.removeprefix(LINK_PATH))
        query = {name: values[0] for name, values in parse_qs(parts.query).items()}
        return store.signed_file(key, int(query["expires"]), query["signature"]).read_bytes()

    async def leftovers() -> list[str]:
        assert database.read_bytes() == b"not an artifact"
        return [str(p) for p in root.rglob("*") if p.is_file() and p != database]

    async def crash() -> None:
        folder = root / "artifacts" / "iris"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / ".upload-1.2.aaaaaaaaaaaa.bbbbbbbb-x1y2z3.tmp").write_bytes(b"half")

    return Harness(
        "local",
        store,
        missing_uri=(root / "artifacts" / "iris" / f"{UNUSED}.bento").as_uri(),
        foreign_uris=[
            "file:///etc/passwd",
            database.as_uri(),
            f"{root.as_uri()}/artifacts/iris/../../modelyard.db",
            f"s3://bucket/artifacts/iris/{UNUSED}.bento",
        ],
        tamper=tamper,
        fetch=fetch,
        leftovers=leftovers,
        crash=crash,
    )


def s3_harness(store: S3ArtifactStore, client: Any) -> Harness:
    bucket = store.bucket

    async def tamper(uri: str, data: bytes) -> None:
        await client.put_object(Bucket=bucket, Key=urlsplit(uri).path[1:], Body=data)

    async def fetch(url: str) -> bytes:
        async with httpx.AsyncClient() as http:
            response = await http.get(url)
        assert response.status_code == 200, response.text
        return response.content

    async def leftovers() -> list[str]:
        objects = await client.list_objects_v2(Bucket=bucket)
        uploads = await client.list_multipart_uploads(Bucket=bucket)
        return [o["Key"] for o in objects.get("Contents", []) + uploads.get("Uploads", [])]

    async def crash() -> None:
        key = f"team-a/artifacts/iris/{UNUSED}.bento"
        await client.create_multipart_upload(Bucket=bucket, Key=key)

    return Harness(
        "s3",
        store,
        missing_uri=f"s3://{bucket}/team-a/artifacts/iris/{UNUSED}.bento",
        foreign_uris=[
            f"s3://other-bucket/team-a/artifacts/iris/{UNUSED}.bento",
            f"s3://{bucket}/team-b/artifacts/iris/{UNUSED}.bento",
            f"file:///tmp/artifacts/iris/{UNUSED}.bento",
        ],
        tamper=tamper,
        fetch=fetch,
        leftovers=leftovers,
        crash=crash,
    )


@pytest.fixture(params=["local", "s3"])
async def harness(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    if request.param == "local":
        yield local_harness(tmp_path / "data")
        return
    endpoint: str = request.getfixturevalue("moto_s3")
    bucket = await create_bucket(endpoint)
    store = await open_s3_store(f"s3://{bucket}/team-a/", **s3_options(endpoint))
    try:
        async with s3_client(endpoint) as client:
            yield s3_harness(store, client)
    finally:
        await store.close()


# --- the contract ------------------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
async def test_round_trip_checks_sha256_and_size(harness: Harness, size: int) -> None:
    data = payload(size)
    stored = await harness.store.put("iris", chunked(data))
    assert stored.digest == sha256(data)
    assert stored.size_bytes == size
    assert re.fullmatch(r".*/artifacts/iris/[0-9a-f]{32}\.bento", stored.uri)
    assert await read_all(harness.store, stored.uri, stored.digest) == data


async def test_same_content_twice_gets_two_keys_both_readable(harness: Harness) -> None:
    data = payload(5000)
    first = await harness.store.put("iris", chunked(data, 700))
    second = await harness.store.put("iris", chunked(data, 300))
    assert first.uri != second.uri
    assert first.digest == second.digest == sha256(data)
    for stored in (first, second):
        assert await read_all(harness.store, stored.uri, stored.digest) == data


async def test_tampered_object_is_corrupt_and_names_both_digests(harness: Harness) -> None:
    stored = await harness.store.put("iris", chunked(payload(3000)))
    forged = payload(3000, seed=1)
    await harness.tamper(stored.uri, forged)
    with pytest.raises(ArtifactCorrupt) as caught:
        await read_all(harness.store, stored.uri, stored.digest)
    assert stored.digest in caught.value.message
    assert sha256(forged) in caught.value.message


async def test_missing_object_is_not_found(harness: Harness) -> None:
    with pytest.raises(ArtifactNotFound):
        await read_all(harness.store, harness.missing_uri, sha256(b""))


async def test_delete_removes_and_tolerates_missing(harness: Harness) -> None:
    stored = await harness.store.put("iris", chunked(payload(100)))
    await harness.store.delete(stored.uri)
    with pytest.raises(ArtifactNotFound):
        await read_all(harness.store, stored.uri, stored.digest)
    await harness.store.delete(stored.uri)
    await harness.store.delete(harness.missing_uri)
    assert await harness.leftovers() == []


async def test_leftovers_list_artifacts_and_crashed_uploads_and_remove_them(
    harness: Harness,
) -> None:
    stored = await harness.store.put("iris", chunked(payload(100)))
    await harness.crash()
    found = await harness.store.leftovers()
    crashed = Kind.TEMPORARY if harness.kind == "local" else Kind.MULTIPART
    assert sorted(item.kind for item in found) == sorted([Kind.ARTIFACT, crashed])
    artifact = next(item for item in found if item.kind is Kind.ARTIFACT)
    assert artifact.name == stored.uri and 0 <= artifact.age_s < 600
    if harness.kind == "local":  # the temp file's name carries its writer
        assert next(i for i in found if i.kind is crashed).owner == "1.2.aaaaaaaaaaaa.bbbbbbbb"
    for item in found:
        await harness.store.remove(item)
        await harness.store.remove(item)  # gone already is fine
    assert await harness.store.leftovers() == []
    assert await harness.leftovers() == []


async def test_download_link_fetches_the_exact_bytes(harness: Harness) -> None:
    data = payload(PART_SIZE + 10)
    stored = await harness.store.put("iris", chunked(data))
    url = await harness.store.download_url(stored.uri, 60)
    assert await harness.fetch(url) == data


async def test_foreign_uris_are_refused(harness: Harness) -> None:
    for uri in harness.foreign_uris:
        for attempt in (
            read_all(harness.store, uri, sha256(b"")),
            harness.store.download_url(uri, 60),
            harness.store.delete(uri),
        ):
            with pytest.raises(InvalidInput) as caught:
                await attempt
            assert caught.value.field == "uri", uri
    assert await harness.leftovers() == []


async def test_a_name_that_is_no_safe_path_segment_gets_a_folder_that_is(harness: Harness) -> None:
    """Model names may hold spaces or dots (as on MLflow): the artifact folder is then a digest
    of the name, never a path that leaves the store's artifacts folder."""
    stored = await harness.store.put("../escape", chunked(b"x"))
    assert ".." not in stored.uri and "/artifacts/n-" in stored.uri
    await harness.store.delete(stored.uri)


@pytest.mark.parametrize(
    "name",
    ["m" * MAX_NAME, "модель " * (MAX_NAME // 7) + "м" * (MAX_NAME % 7), "m" * 65],
    ids=["256-ascii", "256-cyrillic", "65-ascii"],
)
async def test_every_name_up_to_the_limit_is_stored(harness: Harness, name: str) -> None:
    """The one name limit (MAX_NAME) on both artifact stores: a name too long or too wide for
    a path segment gets the digest folder, in a key far below S3's 1,024 bytes."""
    stored = await harness.store.put(name, chunked(b"x"))
    assert f"/artifacts/{model_folder(name)}/" in stored.uri and "/artifacts/n-" in stored.uri
    assert await read_all(harness.store, stored.uri, stored.digest) == b"x"
    await harness.store.delete(stored.uri)


async def test_failed_upload_leaves_nothing_behind(harness: Harness) -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield payload(PART_SIZE + 1)  # far enough for a multipart upload to have started
        raise ConnectionResetError("the client went away")

    with pytest.raises(ConnectionResetError):
        await harness.store.put("iris", broken())
    assert await harness.leftovers() == []


async def test_download_stopped_early_releases_the_object(harness: Harness) -> None:
    stored = await harness.store.put("iris", chunked(payload(3 * 1024 * 1024)))
    stream = harness.store.get(stored.uri, stored.digest)
    assert isinstance(stream, AsyncGenerator)
    assert await anext(stream)
    await stream.aclose()
    await harness.store.delete(stored.uri)
    assert await harness.leftovers() == []


# --- local store only ------------------------------------------------------------------------


async def test_local_files_live_under_the_data_folder(tmp_path: Path) -> None:
    root = tmp_path / "data"
    stored = await LocalArtifactStore(root, SIGNING_KEY, BASE_URL).put("iris", chunked(b"abc"))
    path = Path(unquote(urlsplit(stored.uri).path))
    assert path.parent == root / "artifacts" / "iris"
    assert path.read_bytes() == b"abc"


async def test_local_link_is_checked(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path, SIGNING_KEY, BASE_URL)
    stored = await store.put("iris", chunked(b"abc"))
    parts = urlsplit(await store.download_url(stored.uri, 60))
    key = unquote(parts.path.removeprefix(LINK_PATH))
    query = {name: values[0] for name, values in parse_qs(parts.query).items()}
    expires, signature, now = int(query["expires"]), query["signature"], time.time()

    verify_local_link(SIGNING_KEY, key, expires, signature, now)
    flipped = signature[:-1] + ("1" if signature[-1] == "0" else "0")
    denied = [
        (SIGNING_KEY, UNUSED, expires, signature, now),  # another artifact's id
        (SIGNING_KEY, key, expires, flipped, now),
        (SIGNING_KEY, key, expires + 3600, signature, now),
        (SIGNING_KEY, key, expires, signature, expires + 1),
        (b"another-key", key, expires, signature, now),
        (SIGNING_KEY, key, expires, "é", now),
    ]
    for args in denied:
        with pytest.raises(PermissionDenied):
            verify_local_link(*args)
    with pytest.raises(InvalidInput) as caught:
        verify_local_link(SIGNING_KEY, "artifacts/iris/../../modelyard.db", expires, signature, now)
    assert caught.value.field == "key"


async def test_local_disk_full_is_insufficient_storage(tiny_disk: Path) -> None:
    """A real full file system (a 1 MiB tmpfs), not a patched write."""
    root = tiny_disk / "data"
    with pytest.raises(InsufficientStorage) as caught:
        await LocalArtifactStore(root, SIGNING_KEY, BASE_URL).put("iris", chunked(payload(5 << 20)))
    assert "No space left on device" in caught.value.message
    assert str(root / "artifacts" / "iris") in caught.value.message
    assert [p for p in root.rglob("*") if p.is_file()] == []


# --- S3 store only ---------------------------------------------------------------------------


async def test_s3_uploads_in_parts_above_one_part(moto_s3: str, s3_bucket: str) -> None:
    store = await open_s3_store(f"s3://{s3_bucket}", **s3_options(moto_s3))
    try:
        small = await store.put("iris", chunked(payload(PART_SIZE - 1)))
        large = await store.put("iris", chunked(payload(2 * PART_SIZE + 1)))
    finally:
        await store.close()
    assert small.uri.startswith(f"s3://{s3_bucket}/artifacts/iris/")
    async with s3_client(moto_s3) as client:
        small_head = await client.head_object(Bucket=s3_bucket, Key=small.uri.split("/", 3)[3])
        large_head = await client.head_object(Bucket=s3_bucket, Key=large.uri.split("/", 3)[3])
    assert "-" not in small_head["ETag"]
    assert large_head["ETag"].strip('"').endswith("-3")  # two full parts and a 1-byte tail
    assert large_head["ContentLength"] == 2 * PART_SIZE + 1


async def test_s3_unreachable_endpoint_is_store_unavailable() -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(StoreUnavailable) as caught:
        await open_s3_store("s3://modelyard-test/x", **s3_options(endpoint))
    assert endpoint in caught.value.message
    assert "modelyard-test" in caught.value.message


async def test_s3_missing_bucket_is_store_unavailable(moto_s3: str) -> None:
    with pytest.raises(StoreUnavailable) as caught:
        await open_s3_store("s3://modelyard-no-such-bucket", **s3_options(moto_s3))
    assert moto_s3 in caught.value.message
    assert "modelyard-no-such-bucket" in caught.value.message


def test_s3_url_must_name_a_bucket() -> None:
    for url in ("s3://", "s3://ab/x", "http://bucket/x", "s3://bucket?x=1"):
        with pytest.raises(InvalidInput):
            S3ArtifactStore(url)
