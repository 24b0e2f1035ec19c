"""`modelyard serve-version`: run one registered version as its own model server (a pod).

What a Kubernetes pod of the chart's `models` entry `{model: iris, version: 2}` runs, in the
modelyard image itself (which has BentoML), so no image is built per version:

1. read the version from the registry (`MODELYARD_REGISTRY_URL`, `MODELYARD_REGISTRY_TOKEN`: a
   deployer token), waiting while the registry is not up or the version not registered yet;
2. fetch its archive through the registry's signed download link (no bearer token travels with
   it: the link is the credential, as for an S3 presigned URL) and check its sha256 against the
   digest the registry holds;
3. import it into a BentoML home of its own and run `bentoml serve` on `--host`/`--port`, kept
   running (restarted after a crash) by the local deployer's own supervisor
   (`adapters.bentoml_local.LocalBentoServers`, with this store as its artifact source);
4. once the server answers `/readyz`, set the version's `endpoint` to `--endpoint` (the pod's
   Service URL) so that the gateways route to it: `PATCH .../versions/{v}` with
   `{"endpoint": ...}`. A registry that refuses that field (4xx) ends the command with exit 1.

SIGTERM stops the server and exits 0; the endpoint stays (other replicas of the same Service
may still serve it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, Final, TypeVar
from urllib.parse import quote

import httpx
import msgspec

from adapters.bentoml_local import LocalBentoServers
from adapters.local_artifacts import verify_digest
from modelyard import __version__
from modelyard.settings import Settings, SettingsError, load_settings
from registry.catalog.domain import ModelVersion
from registry.catalog.sweep import Leftover
from registry.errors import ArtifactNotFound, InvalidInput
from registry.ports import StoredArtifact

DEFAULT_PORT: Final = 3000
CHUNK: Final = 1024 * 1024
TIMEOUT: Final = httpx.Timeout(60.0, connect=5.0)
RETRY_START_S: Final = 0.5
RETRY_MAX_S: Final = 15.0
EXIT_REFUSED: Final = 1
T = TypeVar("T")


def say(message: str) -> None:
    print(f"modelyard serve-version: {message}", file=sys.stderr, flush=True)


class Refused(Exception):
    """The registry answered a 4xx that waiting will not change."""


def _segments(*parts: str | int) -> str:
    return "/".join(quote(str(p), safe="") for p in parts)


class RegistryApi:
    """The few registry calls this command makes, on one async client."""

    def __init__(self, http: httpx.AsyncClient, model: str, version: int) -> None:
        self.http = http
        self.path = f"/api/v1/models/{_segments(model, 'versions', version)}"
        self.name = f"version {version} of {model!r}"

    async def _json(self, method: str, path: str, body: Any = None) -> Any:
        response = await self.http.request(method, path, json=body)
        if response.status_code in (404, 408, 429) or response.status_code >= 500:
            raise httpx.TransportError(f"{method} {path}: HTTP {response.status_code}")
        if not response.is_success:
            raise Refused(f"{method} {path}: HTTP {response.status_code}: {response.text[:500]}")
        return response.json()

    async def version(self) -> ModelVersion:
        return msgspec.convert(await self._json("GET", self.path), ModelVersion, strict=False)

    async def download_link(self) -> dict[str, Any]:
        link: dict[str, Any] = await self._json("GET", f"{self.path}/download-uri")
        return link

    async def set_endpoint(self, endpoint: str) -> ModelVersion:
        found = await self._json("PATCH", self.path, {"endpoint": endpoint})
        return msgspec.convert(found, ModelVersion, strict=False)


async def patiently(what: str, call: Callable[[], Awaitable[T]]) -> T:
    """`call()` until it answers: a registry still starting, or a version not registered yet,
    is waited for with capped exponential backoff; a Refused is not."""
    delay = RETRY_START_S
    said = ""
    while True:
        try:
            return await call()
        except httpx.TransportError as exc:
            reason = str(exc) or type(exc).__name__
            if reason != said:
                say(f"waiting to {what}: {reason}")
                said = reason
        await asyncio.sleep(delay)
        delay = min(delay * 2, RETRY_MAX_S)


class SignedLinkArtifacts:
    """The artifact store of a version pod: reads one archive through the registry's signed
    download link and checks its digest; it stores nothing."""

    def __init__(self, api: RegistryApi, download: httpx.AsyncClient) -> None:
        self.api = api
        self.download = download  # no Authorization header: the link carries its credential

    async def put(self, name: str, chunks: AsyncIterator[bytes]) -> StoredArtifact:
        raise InvalidInput("a version pod only reads archives", field="name")

    async def delete(self, uri: str) -> None:
        raise InvalidInput("a version pod only reads archives", field="uri")

    async def leftovers(self) -> list[Leftover]:
        return []  # it keeps nothing: the registry sweeps its own store

    async def remove(self, leftover: Leftover) -> None:
        raise InvalidInput("a version pod only reads archives", field="uri")

    async def download_url(self, uri: str, expires_s: int) -> str:
        link = await patiently("get a download link", self.api.download_link)
        if link["artifact_uri"] != uri:
            raise ArtifactNotFound(f"{self.api.name} now has artifact {link['artifact_uri']}")
        return str(link["download_url"])

    async def get(self, uri: str, digest: str) -> AsyncIterator[bytes]:
        url = await self.download_url(uri, 0)
        say(f"fetching {uri} through the registry's signed link")
        hasher = hashlib.sha256()
        size = 0
        async with self.download.stream("GET", url) as response:
            if response.status_code != 200:
                raise ArtifactNotFound(f"the download link answered HTTP {response.status_code}")
            async for chunk in response.aiter_bytes(CHUNK):
                hasher.update(chunk)
                size += len(chunk)
                yield chunk
        verify_digest(uri, digest, hasher)  # ArtifactCorrupt: the deployer fails and retries
        say(f"fetched {size} bytes, digest verified: {digest}")


async def serve_version(
    settings: Settings, model: str, number: int, host: str, port: int, endpoint: str
) -> int:
    headers = {"User-Agent": f"modelyard-serve-version/{__version__}"}
    if settings.registry_token:
        headers["Authorization"] = f"Bearer {settings.registry_token}"
    base = settings.registry_url.rstrip("/")
    async with (
        httpx.AsyncClient(base_url=base, headers=headers, timeout=TIMEOUT) as http,
        httpx.AsyncClient(timeout=TIMEOUT, follow_redirects=True) as download,
    ):
        api = RegistryApi(http, model, number)
        try:
            version = await patiently(f"read {api.name} from {base}", api.version)
        except Refused as exc:
            say(str(exc))
            return EXIT_REFUSED
        if version.artifact_uri is None:
            say(f"{api.name} has no archive to serve (it is served at {version.endpoint})")
            return EXIT_REFUSED
        servers = LocalBentoServers(
            Path(settings.data_dir) / "servers",
            SignedLinkArtifacts(api, download),
            host=host,
            port=port,
            ready_timeout_s=settings.ready_timeout_s,
        )
        return await _run(servers, api, version, endpoint)


async def _run(
    servers: LocalBentoServers, api: RegistryApi, version: ModelVersion, endpoint: str
) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    changed = asyncio.Event()
    servers.subscribe(changed.set)
    seen: tuple[str, str | None] | None = None
    published = version.endpoint == endpoint
    code = 0
    try:
        servers.ensure(version)
        while not stop.is_set():
            (state,) = servers.states()
            if (state.status, state.detail) != seen:
                seen = (state.status, state.detail)
                say(f"{api.name}: {state.status}" + (f" ({state.detail})" if state.detail else ""))
            if state.status == "ready" and not published:
                try:
                    await patiently("set the endpoint", lambda: api.set_endpoint(endpoint))
                except Refused as exc:
                    say(f"the registry refused the endpoint: {exc}")
                    code = EXIT_REFUSED
                    break
                published = True
                say(f"{api.name}: endpoint set to {endpoint}; gateways route to it")
            changed.clear()
            waiters = [asyncio.ensure_future(e.wait()) for e in (changed, stop)]
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            for waiter in waiters:
                waiter.cancel()
    finally:
        await servers.close()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    say("stopped")
    return code


def _run_command(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(os.environ, data_dir=args.data_dir, registry_url=args.registry)
    except SettingsError as exc:
        print(f"modelyard: {exc}", file=sys.stderr)
        return 2
    endpoint = args.endpoint or f"http://{args.host}:{args.port}"
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(
            serve_version(settings, args.model, args.version, args.host, args.port, endpoint)
        )
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `serve-version` to the `modelyard` parser."""
    p = sub.add_parser(
        "serve-version",
        help="run one registered version's Bento as a model server (a Kubernetes pod)",
        description="Fetch a version's archive through the registry's signed link, check its"
        " digest, serve it with `bentoml serve`, then set the version's endpoint so that the"
        " gateways route to it. The token is MODELYARD_REGISTRY_TOKEN (a deployer token).",
    )
    p.add_argument("--model", required=True, help="the registered model's name")
    p.add_argument("--version", required=True, type=int, help="the registered version number")
    p.add_argument("--registry", help="registry base URL (MODELYARD_REGISTRY_URL)")
    p.add_argument("--host", default="0.0.0.0", help="bind address (default 0.0.0.0)")  # noqa: S104
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (default 3000)")
    p.add_argument(
        "--endpoint",
        help="the URL gateways reach this server at, e.g. its Service's (default http://HOST:PORT)",
    )
    p.add_argument("--data-dir", help="archives and BentoML's home (MODELYARD_DATA_DIR)")
    p.set_defaults(run=_run_command)
