"""Read what a `.bento` archive (the output of `bentoml export`) holds, without bentoml.

An archive is a tar in one of ARCHIVE_FORMATS (xz, gzip or plain) with `bento.yaml` at its
root and the models it needs under `models/<name>/<version>/`. We read the tag, the APIs with
their input names (and, from their schemas, inputs and outputs as tensors:
adapters.bento_schema) and the model tags, and refuse an archive that is not a Bento or lacks a
model it names.
"""

from __future__ import annotations

import tarfile
from pathlib import Path
from typing import Any, Final, Literal, NamedTuple

import yaml

from adapters.bento_schema import tensors
from contract.routes import MAX_API_NAME, MAX_APIS, MAX_INPUTS, ApiSpec
from registry.errors import BadArtifact
from registry.ports import BentoInfo


class ArchiveFormat(NamedTuple):
    name: str  # as messages say it
    magic: bytes  # what the file starts with (a plain tar: "ustar" at offset 257)
    tar_mode: Literal["r:xz", "r:gz", "r:"]  # tarfile's mode to read it
    suffix: str  # the file name `bentoml import` reads it under: it guesses from the suffix


#: The one list of accepted archives, shared by the registry (read_bento refuses any other at
#: upload) and the deployer (adapters/bentoml_local.py imports each under its suffix: a
#: `.bento` file is read as xz only, so a gzip or plain tar must be named `.tar.gz`, `.tar`).
ARCHIVE_FORMATS: Final = (
    ArchiveFormat("xz tar", b"\xfd7zXZ\x00", "r:xz", ".bento"),
    ArchiveFormat("gzip tar", b"\x1f\x8b", "r:gz", ".tar.gz"),
    ArchiveFormat("plain tar", b"ustar", "r:", ".tar"),
)
PLAIN_TAR_MAGIC_AT: Final = 257
SNIFF_BYTES: Final = 512


def archive_format(head: bytes) -> ArchiveFormat | None:
    """Which accepted format a file starting with `head` (its first SNIFF_BYTES) is in."""
    for fmt in ARCHIVE_FORMATS:
        at = PLAIN_TAR_MAGIC_AT if fmt.tar_mode == "r:" else 0
        if head[at : at + len(fmt.magic)] == fmt.magic:
            return fmt
    return None


def sniff(path: Path) -> ArchiveFormat | None:
    with path.open("rb") as file:
        return archive_format(file.read(SNIFF_BYTES))


MAX_MANIFEST_BYTES: Final = 1024 * 1024
# what reaches the store is held to the API's limits (VersionCreate: bento_tag; the APIs'
# limits are contract/routes.py's)
MAX_TAG: Final = 500


def _load(manifest_bytes: bytes) -> Any:
    """The YAML document, refused when it has anchors or aliases: a 2 KB "billion laughs"
    manifest would otherwise expand to gigabytes (bentoml writes neither)."""
    for event in yaml.parse(manifest_bytes, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise BadArtifact(
                "bento.yaml uses YAML anchors or aliases, which a Bento manifest never does",
                field="bento",
            )
    return yaml.safe_load(manifest_bytes)


def _text(value: object, what: str, limit: int) -> str:
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise BadArtifact(f"bento.yaml: {what} must be a string", field="bento")
    text = str(value)
    if not text or len(text) > limit:
        raise BadArtifact(
            f"bento.yaml: {what} must have 1 to {limit} characters (has {len(text)})",
            field="bento",
        )
    if "\x00" in text:  # YAML's "\0": PostgreSQL's text cannot hold it, the API refuses it
        raise BadArtifact(f"bento.yaml: {what} holds a NUL character", field="bento")
    return text


def _member_name(name: str) -> str:
    return name[2:] if name.startswith("./") else name


def _api(route: Any, key: str) -> ApiSpec:
    if not isinstance(route, dict) or "name" not in route:
        raise BadArtifact(f"bento.yaml: every entry of {key} needs a name", field="bento")
    name = _text(route["name"], f"the name of an entry of {key}", MAX_API_NAME)
    schema = route.get("input") if key == "schema.routes" else None
    properties = (schema.get("properties") if isinstance(schema, dict) else None) or {}
    if not isinstance(properties, dict) or len(properties) > MAX_INPUTS:
        raise BadArtifact(
            f"bento.yaml: API {name} has more than {MAX_INPUTS} inputs or malformed ones",
            field="bento",
        )
    inputs = sorted(_text(k, f"an input name of API {name}", MAX_API_NAME) for k in properties)
    if key != "schema.routes":
        return ApiSpec(name=name, inputs=inputs)
    return ApiSpec(
        name=name, inputs=inputs, tensors=tensors(schema), outputs=tensors(route.get("output"))
    )


def _apis(manifest: dict[str, Any]) -> list[ApiSpec]:
    """New-style services list routes under `schema`; 1.x-legacy bentos list `apis`."""
    schema = manifest.get("schema") or {}
    routes = (schema.get("routes") if isinstance(schema, dict) else None) or []
    key = "schema.routes"
    if not routes:
        routes, key = manifest.get("apis") or [], "apis"
    if not isinstance(routes, list) or len(routes) > MAX_APIS:
        raise BadArtifact(f"bento.yaml: {key} must be a list of at most {MAX_APIS}", field="bento")
    return [_api(route, key) for route in routes]


def _models(manifest: dict[str, Any]) -> list[str]:
    entries = list(manifest.get("models") or [])
    for service in manifest.get("services") or []:
        entries += (service.get("models") if isinstance(service, dict) else None) or []
    tags = {
        _text(m["tag"], "a model tag", MAX_TAG)
        for m in entries
        if isinstance(m, dict) and "tag" in m
    }
    return sorted(tags)


def read_bento(path: Path) -> BentoInfo:
    """Inspect the archive at `path`; raises BadArtifact naming what is wrong."""
    fmt = sniff(path)
    if fmt is None:
        accepted = ", ".join(f.name for f in ARCHIVE_FORMATS)
        raise BadArtifact(
            f"not a Bento archive (a tar from `bentoml export`): accepted formats are {accepted}",
            field="bento",
        )
    try:
        with tarfile.open(path, fmt.tar_mode) as archive:
            manifest_bytes: bytes | None = None
            present: set[str] = set()
            for member in archive:
                name = _member_name(member.name)
                if name == "bento.yaml" and member.isfile():
                    if member.size > MAX_MANIFEST_BYTES:
                        raise BadArtifact("bento.yaml is larger than 1 MiB", field="bento")
                    extracted = archive.extractfile(member)
                    manifest_bytes = extracted.read() if extracted else None
                elif name.startswith("models/") and name.endswith("/model.yaml"):
                    present.add(name)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise BadArtifact(
            f"not a Bento archive (a tar from `bentoml export`): {exc}", field="bento"
        ) from exc
    if manifest_bytes is None:
        raise BadArtifact("the archive has no bento.yaml: not a Bento", field="bento")
    try:
        manifest = _load(manifest_bytes)
        if not isinstance(manifest, dict):
            raise TypeError("the document is not a mapping")
        tag = _text(manifest["name"], "name", MAX_TAG) + ":"
        tag += _text(manifest["version"], "version", MAX_TAG)
        models = _models(manifest)
        apis = _apis(manifest)
    except (yaml.YAMLError, KeyError, TypeError, AttributeError, ValueError) as exc:
        raise BadArtifact(
            f"bento.yaml is not a valid Bento manifest: {exc}", field="bento"
        ) from exc
    if len(tag) > MAX_TAG:
        raise BadArtifact(f"the Bento tag is longer than {MAX_TAG} characters", field="bento")
    service = manifest.get("service", "")
    bentoml_version = manifest.get("bentoml_version")
    missing = [m for m in models if f"models/{m.replace(':', '/')}/model.yaml" not in present]
    if missing:
        raise BadArtifact(
            f"Bento {tag} needs model(s) {', '.join(missing)} that the archive does not hold",
            field="bento",
        )
    return BentoInfo(
        tag=tag,
        service=_text(service, "service", MAX_TAG) if service else "",
        bentoml_version=None
        if bentoml_version is None
        else _text(bentoml_version, "bentoml_version", MAX_API_NAME),
        apis=apis,
        models=models,
    )
