"""Reading `.bento` archives without bentoml: what is recorded, and what is refused."""

from __future__ import annotations

import tarfile
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from adapters.bento_archive import ARCHIVE_FORMATS, read_bento, sniff
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


@pytest.mark.parametrize("mode", ["w:bz2", "zip"])
def test_an_archive_the_deployer_cannot_import_is_refused(tmp_path: Path, mode: str) -> None:
    """tarfile reads bz2, but the deployer imports only ARCHIVE_FORMATS: one list for both."""
    path = tmp_path / "a.bento"
    if mode == "zip":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("bento.yaml", "name: x\n")
    else:
        plain_tar = write_bento(tmp_path / "plain.tar", compression="")
        with tarfile.open(plain_tar) as plain, tarfile.open(path, mode) as packed:
            for member in plain:
                packed.addfile(member, plain.extractfile(member))
    with pytest.raises(BadArtifact, match="accepted formats are") as err:
        read_bento(path)
    assert err.value.field == "bento"
    for fmt in ARCHIVE_FORMATS:
        assert fmt.name in err.value.message


@pytest.mark.parametrize(
    ("compression", "suffix"), [("xz", ".bento"), ("gz", ".tar.gz"), ("", ".tar")]
)
def test_each_accepted_format_is_recognised_with_the_suffix_bentoml_reads(
    tmp_path: Path, compression: str, suffix: str
) -> None:
    fmt = sniff(write_bento(tmp_path / "a.bento", compression=compression))
    assert fmt is not None and fmt.suffix == suffix


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
