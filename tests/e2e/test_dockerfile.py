"""The image. No image builder runs on this machine (`docker` has no daemon here), so the
Dockerfile is linted by hadolint (from PyPI, sha256-checked: tests/hadolint.py), its shape is
checked against the chart, and its build stage's install step runs as written on a clean
virtualenv from the files its COPY lines and .dockerignore let in.

The install step's command is run unchanged; pip reads where to find packages from its
environment: PIP_NO_INDEX=1 and PIP_FIND_LINKS=.cache/wheelhouse, a wheelhouse filled once with
`pip download '.[serving]' setuptools` (the build backend), so that the run takes well under
the ~2 min budget instead of downloading ~100 MB each time.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Final

import pytest
import yaml

from modelyard.cli.main import build_parser
from tests.chart import CHART, ROOT
from tests.hadolint import HadolintUnavailable, ensure_hadolint

pytestmark = pytest.mark.e2e

DOCKERFILE: Final = ROOT / "Dockerfile"
WHEELHOUSE: Final = ROOT / ".cache" / "wheelhouse"
INSTALL_TIMEOUT_S: Final = 600
BASE_PYTHON: Final = Path(getattr(sys, "_base_executable", sys.executable))


def _instructions(stage: str) -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n", " ", stage)
    out = []
    for line in joined.splitlines():
        word, _, rest = line.strip().partition(" ")
        if word.isupper() and not line.lstrip().startswith("#"):
            out.append((word, rest.strip()))
    return out


def _stages() -> list[str]:
    return re.split(r"\n(?=FROM )", DOCKERFILE.read_text())[1:]


def _packages() -> set[str]:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    include = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    return {name.rstrip("*") for name in include}


def test_hadolint_finds_nothing() -> None:
    try:
        hadolint = ensure_hadolint()
    except HadolintUnavailable as exc:
        pytest.fail(f"hadolint is needed and could not be had: {exc}")
    done = subprocess.run(
        [str(hadolint), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_dockerfile_runs_the_cli_as_the_charts_non_root_user() -> None:
    text = DOCKERFILE.read_text()
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    uid = values["podSecurityContext"]["runAsUser"]
    users = re.findall(r"^USER (\S+)$", text, flags=re.MULTILINE)
    assert users == [f"{uid}:{values['podSecurityContext']['runAsGroup']}"]
    assert re.search(r'^ENTRYPOINT \["modelyard"\]$', text, flags=re.MULTILINE)
    (cmd,) = re.findall(r'^CMD \["(\w+)"\]$', text, flags=re.MULTILINE)
    assert cmd == "serve"  # `docker run IMAGE` is `make run`: the chart's default shape
    assert build_parser().parse_args([cmd]).command == cmd
    bases = re.findall(r"^FROM (\S+)", text, flags=re.MULTILINE)
    # the runtime image is slim; the build stage is the same Python with a C compiler (mypyc)
    assert len(bases) == 2 and bases[1].endswith("-slim") and ":latest" not in text
    assert bases[0] == bases[1].removesuffix("-slim")
    assert "MODELYARD_DEPLOYER" not in text  # the chart says which deployer each shape runs


def test_the_build_copies_every_package_and_dockerignore_lets_exactly_those_in() -> None:
    wanted = _packages() | {"pyproject.toml", "setup.py", "README.md"}
    kept = [line for line in (ROOT / ".dockerignore").read_text().splitlines() if line[:1] != "#"]
    assert kept[0] == "**"  # everything is ignored but what the build copies
    assert {line.lstrip("!").rstrip("/") for line in kept if line.startswith("!")} == wanted
    build = _instructions(_stages()[0])
    copied = set()
    for word, rest in build:
        if word == "COPY":
            copied |= set(rest.split()[:-1])
    assert copied == wanted


def _build_context(into: Path) -> None:
    """The files .dockerignore lets into the build (no caches, no bytecode)."""
    for name in _packages():
        shutil.copytree(ROOT / name, into / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(ROOT / name, into / name)


def _wheelhouse() -> Path:
    """Filled by `pip download` once per pyproject.toml (a stamp holds its sha256)."""
    pyproject = (ROOT / "pyproject.toml").read_bytes()
    stamp = WHEELHOUSE / ".pyproject-sha256"
    digest = hashlib.sha256(pyproject).hexdigest()
    if stamp.is_file() and stamp.read_text() == digest:
        return WHEELHOUSE
    build_requires = tomllib.loads(pyproject.decode())["build-system"]["requires"]
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--dest",
            str(WHEELHOUSE),
            ".[serving,compile]",
            *build_requires,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    stamp.write_text(digest)
    return WHEELHOUSE


def test_the_install_step_makes_a_virtualenv_that_runs_both_shapes(tmp_path: Path) -> None:
    stage = _stages()[0]
    env_line = dict(_instructions(stage))["ENV"]
    env = dict(pair.split("=", 1) for pair in env_line.split())
    (run,) = [rest for word, rest in _instructions(stage) if word == "RUN"]
    assert "/opt/modelyard" in run and '".[serving,compile]"' in run  # BentoML goes in
    assert "MODELYARD_COMPILE=1" in run  # and the gateway's hot path is compiled
    prefix = tmp_path / "opt" / "modelyard"
    context = tmp_path / "src"
    context.mkdir()
    _build_context(context)
    python = tmp_path / "bin" / "python"
    python.parent.mkdir()
    python.symlink_to(BASE_PYTHON)  # the base image's `python`: this machine's 3.11, no venv
    pip_env = {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(_wheelhouse())}
    done = subprocess.run(
        ["/bin/sh", "-c", run.replace("/opt/modelyard", str(prefix))],
        cwd=context,
        env={"PATH": f"{python.parent}:/usr/bin:/bin", "HOME": str(tmp_path), **env, **pip_env},
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    bin_dir = prefix / "bin"
    assert not (bin_dir / "pip").exists()  # the runtime image carries no installer
    for argv in (["modelyard", "--version"], ["modelyard", "serve-version", "--help"]):
        shown = subprocess.run(
            [str(bin_dir / argv[0]), *argv[1:]],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert shown.returncode == 0, shown.stderr
    assert not list(prefix.glob("lib/python*/site-packages/mypy/"))  # the compiler stays out
    compiled = prefix.glob("lib/python*/site-packages/gateway/transport/http1.*.so")
    assert list(compiled), "the gateway's hot path is not compiled"
    probe = (
        "import bentoml, sklearn, modelyard.cli.version_server, contract.routes, gateway.front;"
        " assert gateway.front.__file__.endswith('.so'), gateway.front.__file__; print('ok')"
    )
    shown = subprocess.run(
        [str(bin_dir / "python"), "-c", probe],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"BENTOML_DO_NOT_TRACK": "true", "HOME": str(tmp_path)},
        cwd=tmp_path,  # (not this checkout: `-c` puts the working directory first on the path)
    )
    assert shown.stdout.strip().endswith("ok"), shown.stderr[-3000:]
