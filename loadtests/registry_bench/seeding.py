"""Seeding straight into the database: registering 100,000 versions through the API would take
too long. The rows are valid for the schema (adapters/sql/schema.py)."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import asyncpg

from adapters.sql.rows import to_micros
from loadtests.benchkit import BenchError
from loadtests.registry_bench.common import MANY_PREFIX, PAGE_MODEL, Config
from modelyard.processes import ModelyardProcess

#: The columns of model_versions (adapters/sql/schema.py), in the order version_rows fills them.
# fmt: off
VERSION_COLUMNS: Final = (
    "model_id", "version", "stage", "status", "description", "artifact_uri", "digest",
    "size_bytes", "format", "bento_tag", "apis", "endpoint", "run_id", "source", "metrics",
    "params", "tags", "created_by", "created_at", "updated_at", "revision",
)
# fmt: on


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
