"""Reading `.bento` archives without bentoml: what is recorded, and what is refused."""

from __future__ import annotations

import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from adapters.bento_archive import read_bento
from contract.routes import ApiSpec, TensorSpec
from registry.errors import BadArtifact
from tests.integration.bentos import manifest, write_bento


@pytest.mark.parametrize("compression", ["xz", "gz", ""])
def test_tag_apis_and_models_are_read(tmp_path: Path, compression: str) -> None:
    info = read_bento(write_bento(tmp_path / "a.bento", compression=compression))
    assert info.tag == "iris_classifier:abc123"
    assert info.apis == [ApiSpec("classify", ["input_series"])]
    assert info.models == ["iris_clf:v1"]
    assert info.bentoml_version == "1.4.40"


def test_a_bento_whose_model_is_missing_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BadArtifact, match="iris_clf:v1"):
        read_bento(write_bento(tmp_path / "a.bento", models=()))


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"just some bytes, not a tar", "not a Bento archive"),
        (b"", "not a Bento archive"),
    ],
)
def test_non_archives_are_refused(tmp_path: Path, content: bytes, match: str) -> None:
    path = tmp_path / "x.bento"
    path.write_bytes(content)
    with pytest.raises(BadArtifact, match=match) as err:
        read_bento(path)
    assert err.value.field == "bento"


def test_a_tar_without_bento_yaml_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.tar"
    with tarfile.open(path, "w") as archive:
        archive.add(__file__, arcname="README.md")
    with pytest.raises(BadArtifact, match=r"no bento\.yaml"):
        read_bento(path)


def test_a_broken_manifest_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BadArtifact, match="not a valid Bento manifest"):
        read_bento(write_bento(tmp_path / "a.bento", bento_yaml=b"name: [unclosed"))
    with pytest.raises(BadArtifact, match="not a valid Bento manifest"):
        read_bento(write_bento(tmp_path / "b.bento", bento_yaml=b"service: x\n"))


def test_a_truncated_archive_is_refused(tmp_path: Path) -> None:
    good = write_bento(tmp_path / "a.bento", padding=200_000)
    cut = tmp_path / "cut.bento"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(BadArtifact):
        read_bento(cut)


def test_api_schemas_become_tensors_and_outputs(tmp_path: Path) -> None:
    """What bentoml 1.4 writes for the iris example (an ndarray with dtype and shape in, a
    pydantic model out): the version's API says it as OIP tensors."""
    doc: dict[str, Any] = manifest()
    route = doc["schema"]["routes"][0]
    route["input"]["properties"]["input_series"] = {
        "type": "tensor",
        "format": "numpy-array",
        "dtype": "float64",
        "shape": [-1, 4],
        "dim": -4,
    }
    route["output"] = {
        "type": "object",
        "properties": {
            "predictions": {"type": "array", "items": {"type": "integer"}},
            "model_version": {"type": "string"},
        },
    }
    raw = yaml.safe_dump(doc).encode()
    info = read_bento(write_bento(tmp_path / "a.bento", bento_yaml=raw))
    assert info.apis == [
        ApiSpec(
            "classify",
            ["input_series"],
            [TensorSpec("input_series", "FP64", [-1, 4])],
            [TensorSpec("model_version", "BYTES", []), TensorSpec("predictions", "INT64", [-1])],
        )
    ]
