"""REST: register a version from a Bento archive (streamed body), and artifact download links."""

from __future__ import annotations

import asyncio
import hashlib
import re
from typing import Annotated, Any, Final

import msgspec
from litestar import Controller, Response, get, post
from litestar.di import NamedDependency
from litestar.params import QueryParameter
from litestar.response import File

from registry.catalog.commands import VersionMeta
from registry.catalog.domain import ModelVersion
from registry.catalog.registration import Registration
from registry.errors import InvalidInput, NotFound
from registry.ports import ArtifactStore, SignedFiles
from registry.web.api.context import PathStr, RegistryDep, Req, VersionNo, caller_of
from registry.web.api.versions import version_response

LINK_TTL_S: Final = 900
_FIELD = re.compile(r"\$\.(\w+)")

RegistrationDep = NamedDependency[Registration]
ArtifactsDep = NamedDependency[ArtifactStore]
Pairs = Annotated[list[str] | None, QueryParameter(description="repeatable key=value")]
Text = Annotated[str | None, QueryParameter()]


class DownloadLink(msgspec.Struct):
    artifact_uri: str
    digest: str | None
    download_url: str
    expires_in: int


def _pairs(values: list[str] | None, field: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidInput(f"`{field}` must be key=value, got {item!r}", field=field)
        out[key] = value
    return out


def _metadata(raw: dict[str, Any]) -> VersionMeta:
    try:
        return msgspec.convert(raw, VersionMeta)
    except msgspec.ValidationError as exc:
        found = _FIELD.search(str(exc))
        raise InvalidInput(str(exc), field=found.group(1) if found else None) from None


class BentoController(Controller):
    path = "/models/{name:str}/versions"
    tags = ["versions"]

    @post("/bento", request_max_body_size=None, status_code=201)
    async def upload_bento(
        self,
        registration: RegistrationDep,
        request: Req,
        name: PathStr,
        description: Text = None,
        run_id: Text = None,
        source: Text = None,
        tag: Pairs = None,
        metric: Pairs = None,
        param: Pairs = None,
    ) -> Response[ModelVersion]:
        """Register a version from a `.bento` archive sent as the raw request body."""
        metrics: dict[str, Any] = {}
        for key, value in _pairs(metric, "metric").items():
            try:
                metrics[key] = float(value)
            except ValueError:
                raise InvalidInput(f"metric {key!r} must be a number", field="metric") from None
        meta = _metadata(
            {
                "description": description or "",
                "run_id": run_id,
                "source": source,
                "tags": _pairs(tag, "tag"),
                "metrics": metrics,
                "params": _pairs(param, "param"),
            }
        )
        caller = await caller_of(request, with_body=False)
        if caller.fingerprint is not None:
            query = hashlib.sha256(str(sorted(request.query_params.multi_items())).encode())
            caller = msgspec.structs.replace(
                caller, fingerprint=f"{caller.fingerprint}:{query.hexdigest()}"
            )
        version = await registration.register_bento(caller, name, request.stream(), meta)
        return version_response(version, 201)

    @get("/{version:int}/download-uri")
    async def download_uri(
        self, registry: RegistryDep, artifacts: ArtifactsDep, name: PathStr, version: VersionNo
    ) -> DownloadLink:
        """A link that downloads the version's archive without a bearer token."""
        found = await registry.get_version(name, version)
        if found.artifact_uri is None:
            raise InvalidInput(
                f"version {version} of {name!r} is an endpoint, it has no artifact", field="version"
            )
        url = await artifacts.download_url(found.artifact_uri, LINK_TTL_S)
        return DownloadLink(found.artifact_uri, found.digest, url, LINK_TTL_S)


@get("/api/v1/artifacts/local/{key:path}", tags=["artifacts"])
async def local_download(
    artifacts: ArtifactsDep,
    key: PathStr,
    expires: Annotated[int, QueryParameter()],
    signature: Annotated[str, QueryParameter()],
) -> File:
    """A signed download link of the local artifact store: the signature is the credential,
    so no bearer token is needed (as with S3's presigned URLs). `key` is the artifact's id, not
    a path: the server finds the file."""
    if not isinstance(artifacts, SignedFiles):
        raise NotFound("this server's artifacts are not served from local files", field="key")
    path = await asyncio.to_thread(artifacts.signed_file, key.lstrip("/"), expires, signature)
    return File(path=path, filename=path.name, media_type="application/octet-stream")
