"""The build's one dynamic part (everything else is in pyproject.toml): with
`MODELYARD_COMPILE=1` the gateway's hot path, the modules listed under `[tool.modelyard]
compiled` in pyproject.toml, is compiled to C extensions with mypyc, as the Docker image is
built. Why: the gateway's CPU per proxied request is mostly the interpreter's; compiled, the
same code costs about a quarter less (docs/performance.md, "The compiled hot path"). Without
the variable (`pip install -e .`, `make run`) every module stays Python.

mypyc type-checks what it compiles, so it needs the gateway's dependencies installed beside
it: build with `pip install --no-build-isolation` in an environment that has them and mypy
(the Dockerfile's build stage), or `python -m loadtests.compiled` for a compiled copy of
this tree.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from setuptools import setup


def compiled_modules() -> list[str]:
    """The hot path's source files, as pyproject.toml lists them."""
    config = tomllib.loads(Path(__file__).with_name("pyproject.toml").read_text())
    modules: list[str] = config["tool"]["modelyard"]["compiled"]
    return modules


def ext_modules() -> list[Any]:
    if os.environ.get("MODELYARD_COMPILE", "") != "1":
        return []
    from mypyc.build import mypycify

    return list(mypycify(compiled_modules(), opt_level="3"))


setup(ext_modules=ext_modules())
