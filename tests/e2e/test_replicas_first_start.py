"""Two registry replicas started together on an empty PostgreSQL database (a first
`helm install` with two replicas): both come up, 20 times (issue 18)."""

from __future__ import annotations

import secrets
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from loadtests.postgres import fresh_postgres_database
from modelyard.processes import ModelyardProcess
from tests.conftest import _require_postgres

pytestmark = pytest.mark.e2e

PAIRS = 20
PARALLEL_PAIRS = 4
START_TIMEOUT_S = 120.0  # a loaded 2-core CI machine takes ~30 s per pair


def _pair(root: Path, index: int) -> str:
    """Start two replicas at once on a fresh database; '' when both became ready, else why."""
    token = "e2e-" + secrets.token_urlsafe(24)
    with fresh_postgres_database() as url:
        procs = [
            ModelyardProcess("registry", root / f"pair{index}-{n}", token, database_url=url)
            for n in range(2)
        ]
        try:
            with ThreadPoolExecutor(2) as pool:
                futures = [pool.submit(p.start, START_TIMEOUT_S) for p in procs]
                errors = [f.exception() for f in futures]
            return "; ".join(f"{e}"[-1500:] for e in errors if e is not None)
        finally:
            for p in procs:
                p.stop()


def test_two_replicas_on_an_empty_postgres_database_both_start(tmp_path: Path) -> None:
    _require_postgres()
    with ThreadPoolExecutor(PARALLEL_PAIRS) as pool:
        failures = [why for why in pool.map(lambda i: _pair(tmp_path, i), range(PAIRS)) if why]
    assert not failures, f"{len(failures)} of {PAIRS} pairs failed; first: {failures[0]}"
