"""Registry benchmark: start-up, hot writes and reads, and paging, on SQLite and PostgreSQL.

Run it from the repository root (or with `make bench`):

    python -m loadtests.registry_bench            # the full run (a few minutes)
    python -m loadtests.registry_bench --quick    # a tiny run: only checks that it all works
    python -m loadtests.registry_bench --stores sqlite --out /tmp/bench.json

Per store, against a real `modelyard registry` child process on a loopback port:

1. start-up to ready: spawn to the first 200 from /readyz, repeated on a fresh data directory
   (SQLite) or a fresh database (PostgreSQL) each time; median and max;
2. with one keep-alive HTTP client, sequential requests after a warm-up: `GET /livez` (the
   baseline: client + HTTP + framework, no store), promote to Production with
   `archive_existing` (alternating versions, so every call moves Production), set-alias
   (alternating versions, so every call moves the alias) and get-by-alias; p50/p90/p99/max;
3. the first page of 100 versions of a model that has 100,000 of them (seeded in bulk straight
   into the database, since registering that many through the API would take too long), on the
   native API and through MLflow's `search_model_versions` (`name = '...'`);
4. MLflow's `search_model_versions` with no name filter, first page, once 1,000 more models of
   100 versions each are seeded (the registry then holds 200,000 versions in 1,002 models).

The targets are reported as PASS/MISS and the process exits 0 even when one is missed: this is
a report, not a test (shared machines are noisy). It exits 1 when anything fails outright: a
non-2xx response, a wrong answer, seeding, or a server that does not start. PostgreSQL is
skipped, with the reason in the report, when `loadtests.postgres.postgres_available()` says so.

The JSON report goes to loadtests/results/registry-bench.json unless `--out` says otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import secrets
import sqlite3
import statistics
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import asyncpg
import httpx

from adapters.sql.rows import to_micros
from loadtests.benchkit import BenchError, machine, pin_threads, say, write_report
from loadtests.light_http import LightClient, LightResponse
from loadtests.postgres import fresh_postgres_database, postgres_available
from modelyard.processes import ModelyardProcess

DEFAULT_OUT: Final = Path(__file__).parent / "results" / "registry-bench.json"
STORES: Final = ("sqlite", "postgres")
HOT_MODEL: Final = "bench-hot"
PAGE_MODEL: Final = "bench-paging"
ALIAS: Final = "champion"
HOT_VERSIONS: Final = 3
PAGE_SIZE: Final = 100
REQUEST_TIMEOUT_S: Final = 10.0
PHASE_BUDGET_S: Final = 300.0  # one measured operation may take at most this long in all

#: What each measurement is judged on, and its limit.
TARGETS: Final[dict[str, dict[str, Any]]] = {
    "startup": {"stat": "median", "limit": 1.0, "unit": "s", "stores": ["sqlite"]},
    "promote": {"stat": "p99", "limit": 15.0, "unit": "ms", "stores": list(STORES)},
    "set_alias": {"stat": "p99", "limit": 15.0, "unit": "ms", "stores": list(STORES)},
    "get_by_alias": {"stat": "p99", "limit": 3.0, "unit": "ms", "stores": list(STORES)},
    "first_page": {"stat": "p99", "limit": 50.0, "unit": "ms", "stores": list(STORES)},
    "mlflow_first_page": {"stat": "p99", "limit": 10.0, "unit": "ms", "stores": list(STORES)},
    "mlflow_all_models": {"stat": "p99", "limit": 20.0, "unit": "ms", "stores": list(STORES)},
}
MANY_PREFIX: Final = "bench-many-"
MLFLOW_SEARCH: Final = "/api/2.0/mlflow/model-versions/search"

#: The columns of model_versions (adapters/sql/schema.py), in the order version_rows fills them.
# fmt: off
VERSION_COLUMNS: Final = (
    "model_id", "version", "stage", "status", "description", "artifact_uri", "digest",
    "size_bytes", "format", "bento_tag", "apis", "endpoint", "run_id", "source", "metrics",
    "params", "tags", "created_by", "created_at", "updated_at", "revision",
)
# fmt: on


@dataclass(frozen=True)
class Config:
    iterations: int  # measured requests per hot operation
    warmup: int
    page_iterations: int
    seed_versions: int
    startup_runs: int
    seed_models: int  # more models, of seed_versions // seed_models versions each

    @classmethod
    def full(cls) -> Config:
        return cls(
            iterations=1000,
            warmup=50,
            page_iterations=100,
            seed_versions=100_000,
            startup_runs=5,
            seed_models=1000,
        )

    @classmethod
    def quick(cls) -> Config:
        return cls(
            iterations=30,
            warmup=5,
            page_iterations=10,
            seed_versions=2_000,
            startup_runs=2,
            seed_models=20,
        )


# --- statistics -----------------------------------------------------------------------------


def latency_summary(samples_ms: Sequence[float]) -> dict[str, float | int]:
    """p50/p90/p99 (inclusive interpolation), max and mean, in milliseconds."""
    cuts = statistics.quantiles(samples_ms, n=100, method="inclusive")
    return {
        "n": len(samples_ms),
        "p50_ms": round(cuts[49], 4),
        "p90_ms": round(cuts[89], 4),
        "p99_ms": round(cuts[98], 4),
        "max_ms": round(max(samples_ms), 4),
        "mean_ms": round(statistics.fmean(samples_ms), 4),
    }


def judge(name: str, store: str, result: dict[str, Any]) -> None:
    """Add `target` and `pass` to a result, when the target applies to this store."""
    target = TARGETS.get(name)
    if target is None or store not in target["stores"]:
        return
    key = f"{target['stat']}_{target['unit']}"
    result["target"] = {"stat": key, "limit": target["limit"]}
    result["pass"] = result[key] <= target["limit"]


# --- HTTP -----------------------------------------------------------------------------------


def checked(response: LightResponse) -> Any:
    """The JSON body of a 2xx response; anything else is a failure of the run."""
    if not response.is_success:
        raise BenchError(
            f"{response.method} {response.path} answered"
            f" {response.status_code}: {response.text[:500]}"
        )
    return response.json()


def timed_loop(
    call: Callable[[int], LightResponse],
    check: Callable[[int, Any], None],
    iterations: int,
    warmup: int,
) -> list[float]:
    """Run `call(i)` warmup + iterations times; return the measured latencies in ms.

    `i` keeps counting through the warm-up, so calls that alternate keep alternating."""
    deadline = time.monotonic() + PHASE_BUDGET_S
    samples: list[float] = []
    for i in range(warmup + iterations):
        started = time.perf_counter_ns()
        response = call(i)
        elapsed_ms = (time.perf_counter_ns() - started) / 1e6
        check(i, checked(response))
        if i >= warmup:
            samples.append(elapsed_ms)
        if time.monotonic() > deadline:
            raise BenchError(f"gave up after {PHASE_BUDGET_S:.0f}s ({i + 1} requests)")
    return samples


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise BenchError(message)


def create_model(client: LightClient, name: str) -> None:
    checked(client.post("/api/v1/models", json={"name": name, "description": "benchmark"}))


def create_version(client: LightClient, model: str, n: int) -> int:
    body = {
        "artifact_uri": f"s3://bench/{model}/{n}",
        "digest": "sha256:" + hashlib.sha256(f"{model}/{n}".encode()).hexdigest(),
        "size_bytes": 1024,
    }
    created = checked(client.post(f"/api/v1/models/{model}/versions", json=body))
    return int(created["version"])


# --- the measured operations ----------------------------------------------------------------


def bench_livez(client: LightClient, cfg: Config) -> list[float]:
    def check(_: int, body: Any) -> None:
        expect(body.get("status") == "ok", f"/livez said {body}")

    return timed_loop(lambda _: client.get("/livez"), check, cfg.iterations, cfg.warmup)


def bench_promote(client: LightClient, cfg: Config, versions: Sequence[int]) -> list[float]:
    """Promote versions[i % len] each time: every call archives the previous holder."""
    model = HOT_MODEL

    def call(i: int) -> LightResponse:
        body = {"stage": "Production", "archive_existing": True}
        return client.post(
            f"/api/v1/models/{model}/versions/{versions[i % len(versions)]}/stage", json=body
        )

    def check(i: int, body: Any) -> None:
        wanted = versions[i % len(versions)]
        expect(
            body["version"] == wanted and body["stage"] == "Production",
            f"promote {wanted} returned {body.get('version')} in {body.get('stage')}",
        )

    samples = timed_loop(call, check, cfg.iterations, cfg.warmup)
    last = cfg.warmup + cfg.iterations - 1
    previous = versions[(last - 1) % len(versions)]
    moved = checked(client.get(f"/api/v1/models/{model}/versions/{previous}"))
    expect(moved["stage"] == "Archived", f"version {previous} was not archived: {moved['stage']}")
    return samples


def bench_set_alias(client: LightClient, cfg: Config, versions: Sequence[int]) -> list[float]:
    """Point the alias at versions[i % len] each time: every call moves it."""

    def call(i: int) -> LightResponse:
        body = {"version": versions[i % len(versions)]}
        return client.put(f"/api/v1/models/{HOT_MODEL}/aliases/{ALIAS}", json=body)

    def check(i: int, body: Any) -> None:
        wanted = versions[i % len(versions)]
        expect(
            body["version"] == wanted and ALIAS in body["aliases"],
            f"set-alias to {wanted} returned {body.get('version')}",
        )

    return timed_loop(call, check, cfg.iterations, cfg.warmup)


def bench_get_by_alias(client: LightClient, cfg: Config) -> list[float]:
    url = f"/api/v1/models/{HOT_MODEL}/aliases/{ALIAS}"
    holder = checked(client.get(url))["version"]

    def check(_: int, body: Any) -> None:
        expect(body["version"] == holder, f"alias resolved to {body['version']}, not {holder}")

    return timed_loop(lambda _: client.get(url), check, cfg.iterations, cfg.warmup)


def bench_first_page(client: LightClient, cfg: Config, total: int) -> list[float]:
    url = f"/api/v1/models/{PAGE_MODEL}/versions"
    wanted = list(range(total, total - PAGE_SIZE, -1))

    def check(_: int, body: Any) -> None:
        got = [item["version"] for item in body["items"]]
        expect(got == wanted, f"first page holds {len(got)} items from {got[:1]} to {got[-1:]}")
        expect(body["next_cursor"] is not None, "first page has no next_cursor")

    def call(_: int) -> LightResponse:
        return client.get(url, params={"limit": PAGE_SIZE})

    return timed_loop(call, check, cfg.page_iterations, min(cfg.warmup, 10))


def bench_mlflow_first_page(client: LightClient, cfg: Config, total: int) -> list[float]:
    params = {"filter": f"name = '{PAGE_MODEL}'", "max_results": str(PAGE_SIZE)}
    wanted = [str(n) for n in range(total, total - PAGE_SIZE, -1)]

    def check(_: int, body: Any) -> None:
        got = [item["version"] for item in body["model_versions"]]
        expect(got == wanted, f"MLflow first page holds {len(got)} items from {got[:1]}")
        expect(bool(body.get("next_page_token")), "MLflow first page has no next_page_token")

    def call(_: int) -> LightResponse:
        return client.get(MLFLOW_SEARCH, params=params)

    return timed_loop(call, check, cfg.page_iterations, min(cfg.warmup, 10))


def bench_mlflow_all_models(client: LightClient, cfg: Config) -> list[float]:
    """No name filter: the registry's first 100 versions, by name then newest version."""
    params = {"max_results": str(PAGE_SIZE)}

    def check(_: int, body: Any) -> None:
        got = [(item["name"], -int(item["version"])) for item in body["model_versions"]]
        expect(len(got) == PAGE_SIZE and got == sorted(got), "MLflow page out of order")
        expect(any(n.startswith(MANY_PREFIX) for n, _ in got), "no seeded model on the page")
        expect(bool(body.get("next_page_token")), "MLflow page has no next_page_token")

    def call(_: int) -> LightResponse:
        return client.get(MLFLOW_SEARCH, params=params)

    return timed_loop(call, check, cfg.page_iterations, min(cfg.warmup, 10))


# --- seeding straight into the database -----------------------------------------------------


def version_rows(model_id: int, count: int, model: str = PAGE_MODEL) -> Iterator[tuple[Any, ...]]:
    """Rows 1..count for model_versions, in VERSION_COLUMNS order, valid for the schema."""
    now = to_micros(datetime.now(UTC))
    for n in range(1, count + 1):
        at = now - (count - n) * 1_000_000
        digest = "sha256:" + hashlib.sha256(f"{model}/{n}".encode()).hexdigest()
        # fmt: off
        yield (
            model_id, n, "None", "READY", "", f"s3://bench/{model}/{n}", digest, 1024,
            "bento", None, "[]", None, f"run-{n % 97}", None, "{}", "{}", "{}", "bench", at, at,
            1,
        )
        # fmt: on


def model_rows(cfg: Config) -> list[tuple[Any, ...]]:
    """The extra models (name, description, tags, owner, created_at, updated_at, revision,
    latest_version), each with seed_versions // seed_models versions."""
    now = to_micros(datetime.now(UTC))
    each = cfg.seed_versions // cfg.seed_models
    return [
        (f"{MANY_PREFIX}{i:04d}", "", "{}", "bench", now, now, 1, each)
        for i in range(cfg.seed_models)
    ]


MODEL_INSERT: Final = (
    "INSERT INTO models (name, description, tags, owner, created_at, updated_at, revision,"
    " latest_version) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)


def seed_models_sqlite(db_path: Path, cfg: Config) -> None:
    """The extra models and their versions, in one IMMEDIATE transaction."""
    db = sqlite3.connect(db_path, isolation_level=None, timeout=30)
    try:
        db.execute("PRAGMA busy_timeout = 30000")
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(MODEL_INSERT, model_rows(cfg))
            ids = db.execute(
                "SELECT id, name FROM models WHERE name LIKE ?", (MANY_PREFIX + "%",)
            ).fetchall()
            columns, marks = ", ".join(VERSION_COLUMNS), ", ".join("?" * len(VERSION_COLUMNS))
            each = cfg.seed_versions // cfg.seed_models
            for model_id, name in ids:
                db.executemany(
                    f"INSERT INTO model_versions ({columns}) VALUES ({marks})",
                    version_rows(model_id, each, name),
                )
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
    finally:
        db.close()


async def seed_models_postgres(dsn: str, cfg: Config) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            numbered = MODEL_INSERT
            for i in range(1, 9):
                numbered = numbered.replace("?", f"${i}", 1)
            await conn.executemany(numbered, model_rows(cfg))
            ids = await conn.fetch(
                "SELECT id, name FROM models WHERE name LIKE $1", MANY_PREFIX + "%"
            )
            each = cfg.seed_versions // cfg.seed_models
            records = [r for i in ids for r in version_rows(int(i["id"]), each, i["name"])]
            await conn.copy_records_to_table(
                "model_versions", records=records, columns=list(VERSION_COLUMNS)
            )
        await conn.execute("ANALYZE models")
        await conn.execute("ANALYZE model_versions")
    finally:
        await conn.close()


def seed_models(store: str, proc: ModelyardProcess, cfg: Config) -> float:
    started = time.perf_counter()
    try:
        if store == "sqlite":
            seed_models_sqlite(proc.data_dir / "modelyard.db", cfg)
        else:
            asyncio.run(seed_models_postgres(proc.database_url, cfg))
    except (sqlite3.Error, asyncpg.PostgresError, OSError) as exc:
        raise BenchError(f"seeding {cfg.seed_models} models failed: {exc!r}") from exc
    return time.perf_counter() - started


def seed_sqlite(db_path: Path, count: int) -> None:
    """One IMMEDIATE transaction on the live WAL database (busy_timeout waits out the server)."""
    db = sqlite3.connect(db_path, isolation_level=None, timeout=30)
    try:
        db.execute("PRAGMA busy_timeout = 30000")
        db.execute("BEGIN IMMEDIATE")
        try:
            model_id = _sqlite_model_id(db)
            columns, marks = ", ".join(VERSION_COLUMNS), ", ".join("?" * len(VERSION_COLUMNS))
            db.executemany(
                f"INSERT INTO model_versions ({columns}) VALUES ({marks})",
                version_rows(model_id, count),
            )
            db.execute(
                "UPDATE models SET latest_version = ?, updated_at = ?, revision = revision + 1"
                " WHERE id = ?",
                (count, to_micros(datetime.now(UTC)), model_id),
            )
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
    finally:
        db.close()


def _sqlite_model_id(db: sqlite3.Connection) -> int:
    found = db.execute("SELECT id FROM models WHERE name = ?", (PAGE_MODEL,)).fetchone()
    if found is None:
        raise BenchError(f"model {PAGE_MODEL!r} is not in the SQLite database")
    return int(found[0])


async def seed_postgres(dsn: str, count: int) -> None:
    """COPY the rows in one transaction, then ANALYZE (as autovacuum soon would)."""
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            model_id = await conn.fetchval("SELECT id FROM models WHERE name = $1", PAGE_MODEL)
            if model_id is None:
                raise BenchError(f"model {PAGE_MODEL!r} is not in the PostgreSQL database")
            await conn.copy_records_to_table(
                "model_versions",
                records=list(version_rows(int(model_id), count)),
                columns=list(VERSION_COLUMNS),
            )
            await conn.execute(
                "UPDATE models SET latest_version = $1, updated_at = $2,"
                " revision = revision + 1 WHERE id = $3",
                count,
                to_micros(datetime.now(UTC)),
                model_id,
            )
        await conn.execute("ANALYZE model_versions")
    finally:
        await conn.close()


def seed(store: str, proc: ModelyardProcess, count: int) -> float:
    """Seed `count` versions of PAGE_MODEL; returns the seconds it took."""
    started = time.perf_counter()
    try:
        if store == "sqlite":
            seed_sqlite(proc.data_dir / "modelyard.db", count)
        else:
            asyncio.run(seed_postgres(proc.database_url, count))
    except (sqlite3.Error, asyncpg.PostgresError, OSError) as exc:
        raise BenchError(f"seeding {count} versions failed: {exc!r}") from exc
    return time.perf_counter() - started


# --- processes and stores -------------------------------------------------------------------


def fresh_database(store: str) -> AbstractContextManager[str]:
    """The database URL of an empty store: "" means SQLite in the data dir."""
    return fresh_postgres_database() if store == "postgres" else nullcontext("")


@contextmanager
def running(data_dir: Path, token: str, database_url: str) -> Iterator[ModelyardProcess]:
    """A started `modelyard registry`, stopped on the way out whatever happens."""
    proc = ModelyardProcess(
        role="registry", data_dir=data_dir, admin_token=token, database_url=database_url
    )
    try:
        proc.start()
        yield proc
    except (BenchError, httpx.HTTPError) as exc:
        raise BenchError(f"{exc}\n--- server log (tail) ---\n{proc.output()}") from exc
    finally:
        proc.stop()


def measure_startup(store: str, cfg: Config, workdir: Path, token: str) -> dict[str, Any]:
    samples: list[float] = []
    for i in range(cfg.startup_runs):
        with fresh_database(store) as url:
            proc = ModelyardProcess(
                role="registry",
                data_dir=workdir / f"startup-{i}",
                admin_token=token,
                database_url=url,
            )
            try:
                samples.append(proc.start())
            finally:
                proc.stop()
    result: dict[str, Any] = {
        "n": len(samples),
        "median_s": round(statistics.median(samples), 4),
        "max_s": round(max(samples), 4),
        "samples_s": [round(s, 4) for s in samples],
    }
    judge("startup", store, result)
    return result


@contextmanager
def pinned_apart(proc: ModelyardProcess) -> Iterator[None]:
    """Server threads on the last CPU, this client on the others (as `taskset` would), so the
    two do not fight for one core; PostgreSQL's own processes stay where the OS puts them."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2 or proc.proc is None:
        yield
        return
    pin_threads(proc.proc.pid, {cpus[-1]})
    os.sched_setaffinity(0, set(cpus[:-1]))
    try:
        yield
    finally:
        os.sched_setaffinity(0, set(cpus))


def measure_requests(store: str, cfg: Config, proc: ModelyardProcess, token: str) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    with (
        pinned_apart(proc),
        LightClient(base_url=proc.url, headers=headers, timeout=REQUEST_TIMEOUT_S) as client,
    ):
        create_model(client, HOT_MODEL)
        versions = [create_version(client, HOT_MODEL, n) for n in range(1, HOT_VERSIONS + 1)]
        ops = {
            "livez": bench_livez(client, cfg),
            "promote": bench_promote(client, cfg, versions),
            "set_alias": bench_set_alias(client, cfg, versions),
            "get_by_alias": bench_get_by_alias(client, cfg),
        }
        create_model(client, PAGE_MODEL)
        seed_s = seed(store, proc, cfg.seed_versions)
        ops["first_page"] = bench_first_page(client, cfg, cfg.seed_versions)
        ops["mlflow_first_page"] = bench_mlflow_first_page(client, cfg, cfg.seed_versions)
        models_s = seed_models(store, proc, cfg)
        ops["mlflow_all_models"] = bench_mlflow_all_models(client, cfg)
    results: dict[str, Any] = {}
    for name, samples in ops.items():
        results[name] = latency_summary(samples)
        judge(name, store, results[name])
    results["first_page"] |= {"seeded_versions": cfg.seed_versions, "seed_s": round(seed_s, 4)}
    results["mlflow_first_page"] |= {"seeded_versions": cfg.seed_versions}
    results["mlflow_all_models"] |= {
        "seeded_models": cfg.seed_models,
        "seeded_versions": cfg.seed_versions,
        "seed_s": round(models_s, 4),
    }
    return results


def bench_store(store: str, cfg: Config, workdir: Path) -> dict[str, Any]:
    token = "bench-" + secrets.token_urlsafe(24)
    say(f"[{store}] start-up x{cfg.startup_runs}")
    startup = measure_startup(store, cfg, workdir / store, token)
    with fresh_database(store) as url, running(workdir / store / "bench", token, url) as proc:
        say(f"[{store}] requests: {cfg.iterations} per operation; seeding {cfg.seed_versions}")
        operations = measure_requests(store, cfg, proc, token)
    return {"startup": startup, "operations": operations}


# --- report ---------------------------------------------------------------------------------


def _verdict(result: dict[str, Any]) -> tuple[str, str]:
    if "target" not in result:
        return "-", "-"
    target = result["target"]
    unit = target["stat"].rsplit("_", 1)[1]
    stat = target["stat"].rsplit("_", 1)[0]
    return f"{stat} <= {target['limit']:g} {unit}", "PASS" if result["pass"] else "MISS"


def _problem(found: dict[str, Any]) -> str:
    """One line for a store that was skipped or failed: the first and last line of the why."""
    if "skipped" in found:
        return f"SKIPPED: {found['skipped']}"
    lines = [line.strip() for line in str(found["error"]).splitlines() if line.strip()]
    summary = lines[0] if len(lines) == 1 else f"{lines[0]} ... {lines[-1]}"
    return f"ERROR: {summary[:300]} (details on stderr)"


def table(report: dict[str, Any]) -> str:
    head = f"{'store':<9}{'operation':<22}{'n':>6}{'p50':>10}{'p99':>10}{'max':>10}  {'target':<18}"
    lines = [head + "result", "-" * (len(head) + 6)]
    for store, found in report["stores"].items():
        if "skipped" in found or "error" in found:
            lines.append(f"{store:<9}{_problem(found)}")
            continue
        s = found["startup"]
        target, verdict = _verdict(s)
        lines.append(
            f"{store:<9}{'start-up (s)':<22}{s['n']:>6}{s['median_s']:>10.3f}"
            f"{'':>10}{s['max_s']:>10.3f}  {target:<18}{verdict}"
        )
        for name, r in found["operations"].items():
            label = "livez (baseline)" if name == "livez" else name
            target, verdict = _verdict(r)
            lines.append(
                f"{store:<9}{label + ' (ms)':<22}{r['n']:>6}{r['p50_ms']:>10.3f}"
                f"{r['p99_ms']:>10.3f}{r['max_ms']:>10.3f}  {target:<18}{verdict}"
            )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.registry_bench",
        description=__doc__.splitlines()[0] if __doc__ else None,
    )
    parser.add_argument("--quick", action="store_true", help="tiny run (smoke test)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON report path")
    parser.add_argument("--stores", default=",".join(STORES), help="comma list: sqlite,postgres")
    parser.add_argument("--iterations", type=int, help="measured requests per hot operation")
    args = parser.parse_args(argv)
    unknown = set(args.stores.split(",")) - set(STORES)
    if unknown:
        parser.error(f"unknown store(s): {', '.join(sorted(unknown))}")
    if args.iterations is not None and args.iterations < 2:
        parser.error("--iterations must be at least 2")
    return args


def run(cfg: Config, stores: Sequence[str]) -> dict[str, Any]:
    report: dict[str, Any] = {
        "machine": machine(),
        "config": asdict(cfg),
        "stores": {},
        "targets": TARGETS,
    }
    with tempfile.TemporaryDirectory(prefix="modelyard-bench-") as tmp:
        for store in stores:
            reason = postgres_available() if store == "postgres" else None
            if reason is not None:
                say(f"[{store}] skipped: {reason}")
                report["stores"][store] = {"skipped": reason}
                continue
            try:
                report["stores"][store] = bench_store(store, cfg, Path(tmp))
            except Exception as exc:  # any failure is reported, and makes the exit code 1
                say(f"[{store}] FAILED:\n{traceback.format_exc()}")
                report["stores"][store] = {"error": f"{type(exc).__name__}: {exc}"}
    return report


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = Config.quick() if args.quick else Config.full()
    if args.iterations is not None:
        cfg = Config(**{**asdict(cfg), "iterations": args.iterations})
    report = run(cfg, args.stores.split(","))
    write_report(args.out, report)
    print(table(report))
    print(f"\nreport: {args.out}")
    return 1 if any("error" in found for found in report["stores"].values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
