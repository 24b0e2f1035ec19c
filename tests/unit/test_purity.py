"""The pure core imports no IO library (DESIGN.md): checked by reading its imports."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PURE = [
    "registry/domain.py",
    "registry/errors.py",
    "registry/changes.py",
    "registry/commands.py",
    "registry/rules.py",
    "registry/audit.py",
    "registry/traffic.py",
    "registry/traffic_rules.py",
    "registry/serving.py",
    "registry/readiness.py",
    "registry/routes.py",
    "registry/windows.py",
    "registry/rollouts.py",
    "registry/rollout_rules.py",
    "registry/judge.py",
    "registry/experiments.py",
    "registry/experiment_rules.py",
    "registry/ui/charts.py",
    "gateway/routing.py",
    "registry/mlflow/search_filter.py",
    "registry/mlflow/messages.py",
    "registry/mlflow/webhooks.py",
]
FORBIDDEN = {
    "litestar",
    "asyncpg",
    "aiobotocore",
    "bentoml",
    "opentelemetry",
    "sqlite3",
    "httpx",
    "uvicorn",
    "asyncio",
    "socket",
    "adapters",
}


def imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("module", PURE)
def test_pure_module_imports_no_io(module: str) -> None:
    bad = imported_roots(ROOT / module) & FORBIDDEN
    assert not bad, f"{module} imports IO libraries: {sorted(bad)}"


def test_checker_sees_imports() -> None:
    assert "litestar" in imported_roots(ROOT / "registry/api/models.py")
