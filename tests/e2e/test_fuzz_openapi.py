"""The whole HTTP API of a real `modelyard registry` process (SQLite) fuzzed from its own OpenAPI
document (tests/fuzz_openapi.py): `/api/v1` and the MLflow dialect, once with the admin token
and once with a reader's, and not one answer is a 5xx (issue 18).

Bounded by count, EXAMPLES cases per operation and token (about 50 s a token on a busy 2-core
machine), and by time: past BUDGET_S a token, the operations left get fewer. MODELYARD_FUZZ_SEED
repeats a run (the seed is printed with the figures); MODELYARD_FUZZ_EXAMPLES runs it longer,
MODELYARD_FUZZ_ONLY (a part of an operation's label) fuzzes just the operations it names,
MODELYARD_FUZZ_STORE=postgres runs it on a fresh PostgreSQL database."""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from loadtests.postgres import fresh_postgres_database
from modelyard.processes import ModelyardProcess
from tests.fuzz_openapi import CLOSED, Seed, fuzz

pytestmark = pytest.mark.e2e

EXAMPLES = int(os.environ.get("MODELYARD_FUZZ_EXAMPLES", "40"))
#: past this, each operation left gets a fifth of EXAMPLES (tests/fuzz_openapi.py: fuzz)
BUDGET_S = float(os.environ.get("MODELYARD_FUZZ_BUDGET_S", "60"))
SEED = int(os.environ.get("MODELYARD_FUZZ_SEED", str(secrets.randbelow(2**32))))
STORE = os.environ.get("MODELYARD_FUZZ_STORE", "sqlite")  # or "postgres"
ONLY = os.environ.get("MODELYARD_FUZZ_ONLY", "")  # e.g. "POST /api/v1/windows": just those
#: the operations it must cover (the OpenAPI document's 78 when written, and the MLflow
#: prefixes' unserved paths) and, of their requests, at least half the most it can make
#: (operations with few inputs make fewer)
MIN_OPERATIONS = 70


@dataclass(frozen=True)
class Fuzzed:
    registry: ModelyardProcess
    tokens: dict[str, str]  # by role
    token_ids: frozenset[int]
    webhook_id: str

    def seed(self) -> Seed:
        """(Re)create what the fuzz may have deleted or renamed: model `fz` with a tag, two
        versions and an alias. The admin's fuzz deletes and renames; the reader's cannot."""
        seed = Seed(webhook_id=self.webhook_id, tokens=self.token_ids)
        admin = {"Authorization": f"Bearer {self.tokens['admin']}"}
        model = f"/api/v1/models/{seed.model}"
        with httpx.Client(base_url=self.registry.url, headers=admin, timeout=30) as c:
            if c.get(model).status_code == 404:
                made = c.post("/api/v1/models", json={"name": seed.model, "description": "d"})
                assert made.status_code == 201, made.text
                for _ in range(2):
                    body = {"endpoint": CLOSED, "apis": [{"name": "classify", "inputs": ["x"]}]}
                    made = c.post(f"{model}/versions", json=body)
                    assert made.status_code == 201, made.text
            c.put(f"{model}/tags/{seed.tag}", json={"value": "ml"})
            c.put(f"{model}/aliases/{seed.alias}", json={"version": 1})
        return seed


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzed]:
    with ExitStack() as stack:
        database = ""  # SQLite in the data folder
        if STORE == "postgres":
            database = stack.enter_context(fresh_postgres_database())
        yield from _fuzzed(tmp_path_factory.mktemp("fuzz"), database)


def _fuzzed(data: Path, database: str) -> Iterator[Fuzzed]:
    admin_token = "fuzz-" + secrets.token_urlsafe(24)
    registry = ModelyardProcess("registry", data, admin_token, database)
    try:
        registry.start()
        admin = {"Authorization": f"Bearer {admin_token}"}
        with httpx.Client(base_url=registry.url, headers=admin, timeout=30) as c:
            made = c.post("/api/v1/tokens", json={"name": "fuzz-reader", "role": "reader"})
            assert made.status_code == 201, made.text
            reader = made.json()["token"]
            hook = {
                "name": "fuzz",
                "url": CLOSED,
                "events": [{"entity": "REGISTERED_MODEL", "action": "CREATED"}],
            }
            made = c.post("/api/2.0/mlflow/webhooks", json=hook)
            assert made.status_code == 200, made.text
            webhook_id = made.json()["webhook"]["webhook_id"]
            token_ids = frozenset(t["id"] for t in c.get("/api/v1/tokens").json()["items"])
        tokens = {"admin": admin_token, "reader": reader}
        yield Fuzzed(registry, tokens, token_ids, webhook_id)
    finally:
        registry.stop()


@pytest.mark.parametrize("role", ["admin", "reader"])
def test_no_request_of_the_openapi_fuzz_gets_a_server_error(
    fuzzed: Fuzzed, role: str, record_property: pytest.RecordProperty
) -> None:
    report = fuzz(
        fuzzed.registry.url,
        fuzzed.tokens[role],
        EXAMPLES,
        SEED,
        fuzzed.seed,
        budget_s=BUDGET_S,
        only=ONLY,
    )
    figures = f"fuzz as {role} (seed {SEED}, {EXAMPLES} examples): {report.summary()}"
    print(f"\n{figures}")
    record_property("fuzz_requests", report.requests)
    record_property("fuzz_server_errors", len(report.server_errors))
    shown = "\n".join(
        f"{e.status} {e.operation}: {e.answer}\n  {e.request}" for e in report.server_errors[:10]
    )
    if report.server_errors:
        print(f"the registry's log:\n{fuzzed.registry.output()}")
    assert not report.server_errors, f"{len(report.server_errors)} server errors:\n{shown}"
    assert report.operations >= (MIN_OPERATIONS if not ONLY else 1), figures
    assert report.requests >= report.planned // 2, figures
    assert report.statuses[2] > 0, figures  # the seeded objects were reached
    for token in fuzzed.tokens.values():  # both still work: the fuzz ran as who it says
        whoami = httpx.get(f"{fuzzed.registry.url}/api/v1/whoami", headers=bearer(token))
        assert whoami.status_code == 200, whoami.text
    if not ONLY:
        assert mlflow_routes() <= report.covered, "an MLflow route left out of the fuzz"


def mlflow_routes() -> set[str]:
    """The MLflow dialect's served routes (the pinned list, tests/snapshots/mlflow-routes.txt),
    without their catch-alls (fuzzed apart) and with path parameters as OpenAPI writes them."""
    pinned = (Path(__file__).parents[1] / "snapshots" / "mlflow-routes.txt").read_text()
    served = [line for line in pinned.splitlines() if "{rest:path}" not in line]
    assert len(served) > 20, pinned
    return {re.sub(r"\{(\w+):\w+\}", r"{\1}", line) for line in served}
