"""The pure core imports no IO library (DESIGN.md): checked by reading its imports."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PURE = [
    "contract/health.py",
    "contract/routes.py",
    "contract/traffic.py",
    "contract/windows.py",
    "registry/errors.py",
    "registry/catalog/aliases.py",
    "registry/catalog/audit.py",
    "registry/catalog/changes.py",
    "registry/catalog/commands.py",
    "registry/catalog/decisions.py",
    "registry/catalog/domain.py",
    "registry/catalog/models.py",
    "registry/catalog/stages.py",
    "registry/catalog/sweep.py",
    "registry/catalog/traffic.py",
    "registry/catalog/versions.py",
    "registry/serving/readiness.py",
    "registry/serving/routes.py",
    "registry/serving/rules.py",
    "registry/rollouts/engine.py",
    "registry/rollouts/judge.py",
    "registry/rollouts/rules.py",
    "registry/rollouts/state.py",
    "registry/rollouts/windows.py",
    "registry/experiments/rules.py",
    "registry/experiments/stats.py",
    "registry/webhooks/events.py",
    "registry/web/console/charts.py",
    "registry/web/mlflow/messages.py",
    "registry/web/mlflow/search_filter.py",
    "gateway/routing.py",
    "adapters/bento_schema.py",
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
    assert "litestar" in imported_roots(ROOT / "registry/web/api/models.py")
