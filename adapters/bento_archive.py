"""Read what a `.bento` archive (the output of `bentoml export`) holds, without bentoml.

An archive is a tar (xz, gzip or plain) with `bento.yaml` at its root and the models it
needs under `models/<name>/<version>/`. We read the tag, the APIs with their input names and
the model tags, and refuse an archive that is not a Bento or lacks a model it names.
"""

from __future__ import annotations

import tarfile
from pathlib import Path
from typing import Any, Final

import yaml

from contract.routes import ApiSpec
from registry.errors import BadArtifact
from registry.ports import BentoInfo

MAX_MANIFEST_BYTES: Final = 1024 * 1024


def _member_name(name: str) -> str:
    return name[2:] if name.startswith("./") else name


def _apis(manifest: dict[str, Any]) -> list[ApiSpec]:
    """New-style services list routes under `schema`; 1.x-legacy bentos list `apis`."""
    routes = (manifest.get("schema") or {}).get("routes") or []
    if routes:
        return [
            ApiSpec(
                name=str(route["name"]),
                inputs=sorted(((route.get("input") or {}).get("properties") or {}).keys()),
            )
            for route in routes
        ]
    return [ApiSpec(name=str(api["name"])) for api in manifest.get("apis") or []]


def _models(manifest: dict[str, Any]) -> list[str]:
    tags = {str(m["tag"]) for m in manifest.get("models") or [] if isinstance(m, dict)}
    for service in manifest.get("services") or []:
        tags |= {str(m["tag"]) for m in service.get("models") or []}
    return sorted(tags)


def read_bento(path: Path) -> BentoInfo:
    """Inspect the archive at `path`; raises BadArtifact naming what is wrong."""
    try:
        with tarfile.open(path, "r:*") as archive:
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
        manifest = yaml.safe_load(manifest_bytes)
        tag = f"{manifest['name']}:{manifest['version']}"
    except (yaml.YAMLError, KeyError, TypeError) as exc:
        raise BadArtifact(
            f"bento.yaml is not a valid Bento manifest: {exc}", field="bento"
        ) from exc
    models = _models(manifest)
    missing = [m for m in models if f"models/{m.replace(':', '/')}/model.yaml" not in present]
    if missing:
        raise BadArtifact(
            f"Bento {tag} needs model(s) {', '.join(missing)} that the archive does not hold",
            field="bento",
        )
    return BentoInfo(
        tag=tag,
        service=str(manifest.get("service", "")),
        bentoml_version=manifest.get("bentoml_version"),
        apis=_apis(manifest),
        models=models,
    )
