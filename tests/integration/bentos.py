"""Small synthetic Bento archives (the layout `bentoml export` writes), for tests that need
archives without building real ones."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import yaml

MODEL_TAG = "iris_clf:v1"


def manifest(
    name: str = "iris_classifier", version: str = "abc123", model: str = MODEL_TAG
) -> dict[str, object]:
    return {
        "service": "service:IrisClassifier",
        "name": name,
        "version": version,
        "bentoml_version": "1.4.40",
        "models": [],
        "services": [{"name": name, "models": [{"tag": model, "module": "bentoml.sklearn"}]}],
        "schema": {
            "name": name,
            "routes": [
                {
                    "name": "classify",
                    "route": "/classify",
                    "input": {"properties": {"input_series": {"type": "tensor"}}},
                }
            ],
        },
    }


def write_bento(
    path: Path,
    *,
    bento_yaml: bytes | None = None,
    models: tuple[str, ...] = (MODEL_TAG,),
    compression: str = "xz",
    padding: int = 0,
) -> Path:
    """A tar with bento.yaml and model folders; `padding` adds that many bytes of weights."""
    if bento_yaml is None:
        bento_yaml = yaml.safe_dump(manifest()).encode()
    files = {"./bento.yaml": bento_yaml, "./src/service.py": b"# service\n"}
    for tag in models:
        name, version = tag.split(":")
        files[f"./models/{name}/{version}/model.yaml"] = b"name: " + name.encode() + b"\n"
        files[f"./models/{name}/{version}/saved_model.pkl"] = bytes(padding)
    with tarfile.open(path, f"w:{compression}") as archive:
        for member, data in files.items():
            info = tarfile.TarInfo(member)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path
