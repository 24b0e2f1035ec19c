"""Who may import whom (docs/architecture.md), checked by reading every import of every module.

    contract   <- registry, gateway, adapters, modelyard   (imports nothing of ours)
    registry   <- adapters (not its web layer), modelyard
    gateway    <- modelyard
    adapters   <- modelyard
    modelyard  the composition root: may import everything

The registry and the gateway share only `contract`; `modelyard serve` joins them in the
composition root (`modelyard.bridges`). Imports inside functions count the same as the others.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OURS = ("contract", "registry", "gateway", "adapters", "modelyard")
# package -> the packages (or module prefixes) it may import, besides itself
ALLOWED: dict[str, tuple[str, ...]] = {
    "contract": (),
    "registry": ("contract",),
    "gateway": ("contract",),
    "adapters": ("contract", "registry"),
    "modelyard": ("contract", "registry", "gateway", "adapters"),
}
# prefixes a package may not import even though their root is allowed
FORBIDDEN_PREFIXES: dict[str, tuple[str, ...]] = {
    "adapters": ("registry.web",),  # adapters implement ports; they never reach an HTTP layer
}


def imports_of(path: Path) -> Iterator[tuple[int, str]]:
    """(line, module) of every absolute import in the file, at any depth."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module
            for alias in node.names:  # `from registry import web` names a module too
                yield node.lineno, f"{node.module}.{alias.name}"


def violations(package: str, files: list[Path]) -> list[str]:
    found: list[str] = []
    allowed = (package, *ALLOWED[package])
    for path in files:
        for line, module in imports_of(path):
            root = module.split(".")[0]
            if root not in OURS:
                continue
            shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name
            where = f"{shown}:{line} imports {module}"
            if root not in allowed or any(
                module == p or module.startswith(p + ".")
                for p in FORBIDDEN_PREFIXES.get(package, ())
            ):
                found.append(where)
    return sorted(set(found))


def package_files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", list(ALLOWED))
def test_imports_follow_the_layers(package: str) -> None:
    files = package_files(package)
    assert files, f"no modules found under {package}/"
    assert violations(package, files) == []


def test_the_check_sees_a_reintroduced_import(tmp_path: Path) -> None:
    """The checker itself: a gateway module importing the registry (at the top or inside a
    function) is reported, and so is an adapter reaching into the registry's web layer."""
    bad = tmp_path / "probe.py"
    bad.write_text(
        "from registry.catalog.service import Registry\n"
        "def f():\n    import registry.errors\n"
        "from registry import web\n"
    )
    found = [m for _, m in imports_of(bad)]
    assert "registry.catalog.service" in found and "registry.errors" in found
    # the same file judged as one of the gateway's and as one of the adapters'
    lines = {v.split(":")[1].split()[0] for v in violations("gateway", [bad])}
    assert lines == {"1", "3", "4"}
    assert violations("adapters", [bad]) == ["probe.py:4 imports registry.web"]


def test_contract_is_pure() -> None:
    """The contract is data and pure functions: the standard library and msgspec only."""
    stdlib_ok = {"__future__", "hashlib", "typing", "collections", "datetime", "msgspec"}
    roots = {
        module.split(".")[0]
        for path in package_files("contract")
        for _, module in imports_of(path)
        if not module.startswith("contract")
    }
    assert roots <= stdlib_ok, roots - stdlib_ok
