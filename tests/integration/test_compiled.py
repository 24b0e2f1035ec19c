"""The gateway as shipped: its hot path compiled by mypyc (the Docker image's build,
`MODELYARD_COMPILE=1`), tested by the same tests as the Python tree it comes from.

A compiled module differs from its source in ways a test of the source cannot see: a class
cannot be subclassed by interpreted code, a `Final` constant is inlined (patching it does
nothing), a tuple is unpacked and packed again (a new object: `is` fails). So the build
(loadtests/compiled.py: a copy of this tree, compiled in place) runs the unit tests and the
gateway's integration tests itself, in a pytest of its own.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from loadtests import compiled

#: The gateway's integration tests: its HTTP server, lane, routing, upstream client and fronts.
GATEWAY_TESTS = (
    "tests/unit",
    "tests/integration/test_fast_http.py",
    "tests/integration/test_http_limits.py",
    "tests/integration/test_lane.py",
    "tests/integration/test_gateway_split.py",
    "tests/integration/test_traffic_api.py",
    "tests/integration/test_upstream.py",
    "tests/integration/test_grpc_h2.py",
    "tests/integration/test_tracing.py",
)


@pytest.fixture(scope="module")
def build() -> Path:
    return compiled.build()


def test_the_hot_path_is_loaded_compiled_from_the_build(build: Path) -> None:
    modules = compiled.compiled_modules()
    assert "gateway.front" in modules and "gateway.transport.http1" in modules
    probe = (
        "import importlib, sys\nfor m in sys.argv[1:]: print(importlib.import_module(m).__file__)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, *modules],
        cwd=build,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    files = done.stdout.split()
    assert len(files) == len(modules)
    for module, file in zip(modules, files, strict=True):
        assert file.startswith(str(build)), (module, file)
        assert file.endswith(".so"), f"{module} is not compiled: {file}"
    # what `modelyard serve` says at start-up, in the build and in this tree
    said = "from modelyard.server import gateway_build; print(gateway_build())"
    for cwd, build_kind in ((build, "compiled"), (compiled.ROOT, "python")):
        shown = subprocess.run(
            [sys.executable, "-c", said], cwd=cwd, capture_output=True, text=True, timeout=120
        )
        assert shown.stdout.strip() == build_kind, shown.stderr[-2000:]
    # the tree's own modules stay Python: an edit takes effect without a build
    assert compiled.ROOT.joinpath("gateway", "front.py").exists()
    assert not list(compiled.ROOT.joinpath("gateway").glob("*.so"))


def test_the_gateways_tests_pass_compiled(build: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:xdist",
            "-p",
            "no:cacheprovider",
            "-o",
            "addopts=--strict-markers",
            *GATEWAY_TESTS,
        ],
        cwd=build,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    tail = done.stdout[-4000:] + done.stderr[-2000:]
    assert done.returncode == 0, tail
    assert " passed" in done.stdout and " failed" not in done.stdout, tail
