"""The gateway as shipped: a copy of this tree with its hot path compiled by mypyc.

The Docker image builds modelyard with `MODELYARD_COMPILE=1` (setup.py): the modules listed
under `[tool.modelyard] compiled` in pyproject.toml become C extensions. An editable install
(`make run`, the test suite) stays Python, so that an edit takes effect without a build. This
module makes the compiled build of the working tree where the bench and the tests can run it:
a copy of the packages, the tests and the build files under `.cache/compiled/<key>/`, compiled
in place (`python setup.py build_ext --inplace`, ~30 s on 2 cores), kept for as long as the
sources are unchanged (the key is a hash of every copied file, the Python and mypy versions).
`python -m modelyard ...` started in that directory imports the compiled modules (`-m` puts
the working directory first on the import path), and so does pytest run there.

    python -m loadtests.compiled            # build (or find) it; prints its directory
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parents[1]
#: What a compiled copy holds: the packages, the bench, the tests and the build's files.
COPIED: Final = (
    "adapters",
    "contract",
    "gateway",
    "modelyard",
    "registry",
    "loadtests",
    "tests",
    "pyproject.toml",
    "setup.py",
)
BUILT: Final = ".built"  # written last: a copy without it is not a build
KEPT_BUILDS: Final = 2  # older builds are removed (each ~20 MB)


class BuildError(RuntimeError):
    """The compiled build failed; the message carries the build's output."""


def compiled_modules(root: Path = ROOT) -> list[str]:
    """The modules the build compiles, as dotted names."""
    config = tomllib.loads((root / "pyproject.toml").read_text())
    files: list[str] = config["tool"]["modelyard"]["compiled"]
    return [file.removesuffix(".py").replace("/", ".") for file in files]


def source_files(root: Path = ROOT) -> list[str]:
    """The files to copy: tracked or new (not ignored) under `COPIED`, as git lists them (or,
    outside a git checkout, every file there but bytecode and built extensions)."""
    git = shutil.which("git")
    if git is None or not (root / ".git").exists():
        found = [p for top in COPIED for p in [root / top, *(root / top).rglob("*")]]
        skipped = ("__pycache__", ".pyc", ".so")
        names = [
            str(p.relative_to(root))
            for p in found
            if p.is_file() and not any(part in str(p) for part in skipped)
        ]
        return sorted(names)
    listed = subprocess.run(
        [git, "ls-files", "-co", "--exclude-standard", "-z", "--", *COPIED],
        cwd=root,
        capture_output=True,
        check=True,
    ).stdout
    names = sorted(name for name in listed.decode().split("\0") if name)
    return [name for name in names if (root / name).is_file()]


def build_key(root: Path, files: list[str]) -> str:
    digest = hashlib.sha256()
    digest.update(sys.version.encode())
    digest.update(metadata.version("mypy").encode())
    for name in files:
        digest.update(name.encode() + b"\0")
        digest.update((root / name).read_bytes() + b"\0")
    return digest.hexdigest()[:20]


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One build at a time (the suite's workers may ask for it together)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def build(root: Path = ROOT, cache: Path | None = None) -> Path:
    """The compiled copy of `root`'s current sources: found, or built (raises `BuildError`)."""
    cache = cache or root / ".cache" / "compiled"
    files = source_files(root)
    dest = cache / build_key(root, files)
    if (dest / BUILT).exists():
        return dest
    with _locked(cache / ".lock"):
        if (dest / BUILT).exists():  # built by another process meanwhile
            return dest
        scratch = cache / f"{dest.name}.partial"
        shutil.rmtree(scratch, ignore_errors=True)
        for name in files:
            target = scratch / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / name, target)
        env = {**os.environ, "MODELYARD_COMPILE": "1"}
        done = subprocess.run(
            [sys.executable, "setup.py", "build_ext", "--inplace"],
            cwd=scratch,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise BuildError(f"mypyc build failed:\n{(done.stdout + done.stderr)[-4000:]}")
        shutil.rmtree(scratch / "build", ignore_errors=True)
        (scratch / BUILT).write_text(" ".join(compiled_modules(root)) + "\n")
        shutil.rmtree(dest, ignore_errors=True)
        scratch.rename(dest)
        _prune(cache, keep=dest)
    return dest


def _prune(cache: Path, keep: Path) -> None:
    builds = [p for p in cache.iterdir() if p.is_dir() and p != keep and (p / BUILT).exists()]
    builds.sort(key=lambda p: (p / BUILT).stat().st_mtime, reverse=True)
    for old in builds[KEPT_BUILDS - 1 :]:
        shutil.rmtree(old, ignore_errors=True)


def main() -> int:
    try:
        print(build())
    except BuildError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
