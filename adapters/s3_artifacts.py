"""Artifacts in S3 or an S3-compatible endpoint (AWS, MinIO), through aiobotocore.

One long-lived client: `open_s3_store` enters it and checks the bucket, `close()` exits it.
Uploads go in PART_SIZE parts (one `put_object` below a part): memory stays about one part.
botocore/aiohttp errors become registry errors here; those that mean a bug (EntityTooSmall...)
surface as they are.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, contextmanager
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import parse_qs, urlencode, urlsplit

import aiohttp
import botocore.exceptions as boto  # type: ignore[import-untyped]
from aiobotocore.config import AioConfig  # type: ignore[import-untyped]
from aiobotocore.session import get_session  # type: ignore[import-untyped]

from adapters.local_artifacts import verify_digest
from adapters.model_folder import model_folder
from registry.catalog.sweep import Kind, Leftover
from registry.errors import ArtifactNotFound, InvalidInput, StoreUnavailable
from registry.ports import StoredArtifact

PART_SIZE: Final = 8 * 1024 * 1024
READ_SIZE: Final = 1024 * 1024
MAX_LINK_S: Final = 7 * 24 * 3600  # SigV4 presigned URLs live at most a week
CONNECT_TIMEOUT_S: Final = 5.0
READ_TIMEOUT_S: Final = 60.0
MAX_ATTEMPTS: Final = 3
NOT_FOUND: Final = frozenset({"NoSuchKey", "NotFound", "404"})
UNAVAILABLE: Final = frozenset(
    {"NoSuchBucket", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken"}
)
CONNECTION_ERRORS: Final = (
    boto.ConnectionError,  # refused, DNS, connect timeout, proxy
    boto.HTTPClientError,  # closed mid-request, read timeout, body cut short
    boto.IncompleteReadError,
    boto.NoCredentialsError,
    boto.PartialCredentialsError,
    aiohttp.ClientError,
)

log = logging.getLogger("modelyard.artifacts")


def parse_s3_url(url: str) -> tuple[str, str]:
    """`s3://bucket/some/prefix` -> ("bucket", "some/prefix/"); the prefix may be empty."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not 3 <= len(parts.netloc) <= 63 or parts.query:
        raise InvalidInput(f"{url!r} is not an s3://bucket/prefix URL", field="url")
    prefix = parts.path.strip("/")
    return parts.netloc, f"{prefix}/" if prefix else ""


class _PartBuffer:
    """Chunks held (not copied) until they make a part; each part is joined once."""

    def __init__(self) -> None:
        self.views: deque[memoryview] = deque()
        self.size = 0

    def feed(self, chunk: bytes) -> Iterator[bytes]:
        """Take `chunk`; yields each full part, to be sent before resuming."""
        self.views.append(memoryview(chunk))
        self.size += len(chunk)
        while self.size >= PART_SIZE:
            yield self._cut(PART_SIZE)

    def tail(self) -> bytes:
        return self._cut(self.size)

    def _cut(self, size: int) -> bytes:
        head: list[memoryview] = []
        wanted = size
        while wanted:
            view = self.views.popleft()
            if len(view) > wanted:
                view, rest = view[:wanted], view[wanted:]
                self.views.appendleft(rest)
            head.append(view)
            wanted -= len(view)
        self.size -= size
        return b"".join(head)


class _Upload:
    """One object sent part by part; the upload starts with the first full part, and a stream
    shorter than a part goes in one `put_object`."""

    def __init__(self, call: Callable[..., Awaitable[Any]], bucket: str, key: str) -> None:
        self._call, self._object = call, {"Bucket": bucket, "Key": key}
        self._upload: dict[str, str] | None = None  # the object and its UploadId, once started
        self._parts: list[dict[str, Any]] = []

    async def send(self, data: bytes) -> None:
        if self._upload is None:
            started = await self._call("create_multipart_upload", None, **self._object)
            self._upload = {**self._object, "UploadId": started["UploadId"]}
        number = len(self._parts) + 1  # S3 takes up to 10,000 parts: 80 GiB
        sent = await self._call("upload_part", None, **self._upload, PartNumber=number, Body=data)
        self._parts.append({"PartNumber": number, "ETag": sent["ETag"]})

    async def finish(self, tail: bytes) -> None:
        if self._upload is None:
            await self._call("put_object", None, **self._object, Body=tail)
            return
        if tail:
            await self.send(tail)
        parts = {"Parts": self._parts}
        await self._call("complete_multipart_upload", None, **self._upload, MultipartUpload=parts)

    async def abort(self) -> None:
        if self._upload is None:
            return
        try:
            await self._call("abort_multipart_upload", None, **self._upload)
        except Exception:
            log.warning("could not abort the multipart upload %s", self._upload)


class S3ArtifactStore:
    """ArtifactStore on one bucket and key prefix; URIs are `s3://bucket/key`."""

    def __init__(
        self,
        url: str,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
    ) -> None:
        self.bucket, self.prefix = parse_s3_url(url)
        self.endpoint = endpoint_url or "AWS S3"
        # a custom endpoint (MinIO) rarely resolves bucket subdomains: address it by path
        s3 = {"addressing_style": "path"} if endpoint_url else {}
        config = AioConfig(
            connect_timeout=CONNECT_TIMEOUT_S,
            read_timeout=READ_TIMEOUT_S,
            retries={"mode": "standard", "max_attempts": MAX_ATTEMPTS},
            signature_version="s3v4",
            s3=s3,
        )
        self._client_args: dict[str, Any] = {
            "endpoint_url": endpoint_url,
            "region_name": region,
            "aws_access_key_id": access_key_id,
            "aws_secret_access_key": secret_access_key,
            "config": config,
        }
        self._stack = AsyncExitStack()
        self._client: Any = None

    async def open(self) -> None:
        """Create the client and check that the bucket answers."""
        client_context = get_session().create_client("s3", **self._client_args)
        try:
            self._client = await self._stack.enter_async_context(client_context)
            await self._call("head_bucket", None, Bucket=self.bucket)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        self._client = None
        await self._stack.aclose()

    async def put(self, name: str, chunks: AsyncIterator[bytes]) -> StoredArtifact:
        key = f"{self.prefix}artifacts/{model_folder(name)}/{uuid.uuid4().hex}.bento"
        upload = _Upload(self._call, self.bucket, key)
        hasher, size, buffer = hashlib.sha256(), 0, _PartBuffer()
        try:
            async for chunk in chunks:
                hasher.update(chunk)
                size += len(chunk)
                for part in buffer.feed(chunk):
                    await upload.send(part)
            await upload.finish(buffer.tail())
        except BaseException:
            await upload.abort()
            raise
        uri = f"s3://{self.bucket}/{key}"
        return StoredArtifact(uri=uri, digest=f"sha256:{hasher.hexdigest()}", size_bytes=size)

    async def get(self, uri: str, digest: str) -> AsyncIterator[bytes]:
        response = await self._call("get_object", uri, Bucket=self.bucket, Key=self._key(uri))
        hasher = hashlib.sha256()
        async with response["Body"] as body:
            while True:
                with self._boundary(uri):
                    chunk: bytes = await body.read(READ_SIZE)
                if not chunk:
                    break
                hasher.update(chunk)
                yield chunk
        verify_digest(uri, digest, hasher)

    async def download_url(self, uri: str, expires_s: int) -> str:
        if not 0 < expires_s <= MAX_LINK_S:
            raise InvalidInput(f"expires_s must be 1..{MAX_LINK_S}", field="expires_s")
        params = {"Bucket": self.bucket, "Key": self._key(uri)}
        url: str = await self._call(
            "generate_presigned_url", None, "get_object", Params=params, ExpiresIn=expires_s
        )
        return url

    async def delete(self, uri: str) -> None:
        await self._call("delete_object", None, Bucket=self.bucket, Key=self._key(uri))

    async def leftovers(self) -> list[Leftover]:
        """The objects under `<prefix>artifacts/` and the multipart uploads open there."""
        now, where = datetime.now(UTC), f"{self.prefix}artifacts/"
        found: list[Leftover] = []
        pages = {"list_objects_v2": "Contents", "list_multipart_uploads": "Uploads"}
        for operation, field in pages.items():
            paginator = self._client_now().get_paginator(operation)
            with self._boundary(None):
                async for page in paginator.paginate(Bucket=self.bucket, Prefix=where):
                    for item in page.get(field, ()):
                        found.append(self._leftover(item, now))
        return found

    def _leftover(self, item: dict[str, Any], now: datetime) -> Leftover:
        uri = f"s3://{self.bucket}/{item['Key']}"
        if "UploadId" in item:
            age = (now - item["Initiated"]).total_seconds()
            return Leftover(
                Kind.MULTIPART, f"{uri}?{urlencode({'uploadId': item['UploadId']})}", age
            )
        return Leftover(Kind.ARTIFACT, uri, (now - item["LastModified"]).total_seconds())

    async def remove(self, leftover: Leftover) -> None:
        if leftover.kind is not Kind.MULTIPART:
            await self.delete(leftover.name)
            return
        uri, _, query = leftover.name.partition("?")
        upload_id = parse_qs(query).get("uploadId", [""])[0]
        try:
            await self._call(
                "abort_multipart_upload",
                None,
                Bucket=self.bucket,
                Key=self._key(uri),
                UploadId=upload_id,
            )
        except boto.ClientError as exc:  # completed or aborted meanwhile
            if exc.response.get("Error", {}).get("Code") != "NoSuchUpload":
                raise

    def _client_now(self) -> Any:
        if self._client is None:
            raise RuntimeError("the S3 artifact store is not open")
        return self._client

    def _key(self, uri: str) -> str:
        parts = urlsplit(uri)
        key = parts.path[1:]
        if parts[:2] != ("s3", self.bucket) or not key.startswith(f"{self.prefix}artifacts/"):
            raise InvalidInput(f"{uri!r} is not an artifact in s3://{self.bucket}", field="uri")
        return key

    async def _call(self, operation: str, uri: str | None, *args: Any, **params: Any) -> Any:
        client = self._client_now()
        with self._boundary(uri):
            return await getattr(client, operation)(*args, **params)

    @contextmanager
    def _boundary(self, uri: str | None) -> Iterator[None]:
        """Translate S3 failures: a missing object (when `uri` is one) is ArtifactNotFound;
        a missing bucket, refused credentials, a 5xx or no connection is StoreUnavailable."""
        where = f"S3 bucket {self.bucket!r} at {self.endpoint}"
        try:
            yield
        except boto.ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
            if uri is not None and code in NOT_FOUND:
                raise ArtifactNotFound(f"artifact {uri} does not exist", field="uri") from exc
            if code in NOT_FOUND | UNAVAILABLE or status == 403 or status >= 500:
                raise StoreUnavailable(f"{where} is unavailable: {exc}") from exc
            raise
        except CONNECTION_ERRORS as exc:
            raise StoreUnavailable(f"{where} cannot be reached: {exc}") from exc


async def open_s3_store(
    url: str,
    *,
    endpoint_url: str | None = None,
    region: str | None = None,
    access_key_id: str | None = None,
    secret_access_key: str | None = None,
) -> S3ArtifactStore:
    """An open store on `url` (s3://bucket/prefix); None arguments fall back to the standard
    AWS environment variables and credential chain."""
    store = S3ArtifactStore(
        url,
        endpoint_url=endpoint_url,
        region=region,
        access_key_id=access_key_id,
        secret_access_key=secret_access_key,
    )
    await store.open()
    return store
