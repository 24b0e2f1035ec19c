"""Seeding a registry with many served models for the scale benchmark (loadtests/scale_bench.py).

Registering 10,000 models through the API would take minutes and measure nothing the benchmark
is about, so the rows go straight into the store, through its own driver and row encoders
(adapters/sql/rows.py), in one transaction: each model has a Production version served by an
outside endpoint; one in a hundred also has a Staging version that takes a 10 % canary split.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

from adapters.sql import rows
from adapters.sql.store import open_metadata_store
from contract.routes import ApiSpec
from contract.traffic import Split, TrafficPolicy
from registry.catalog.domain import Model, ModelVersion, Stage, VersionStatus

ENDPOINT: Final = "http://127.0.0.1:9"  # by default never called: only tables are measured
CANARY_EVERY: Final = 100  # 1 % of the models have a canary split
_VERSION_INSERT: Final = rows.VERSION_COLUMNS.replace("v.", "")


def model_name(i: int) -> str:
    return f"scale-{i:05d}"


def _version(name: str, number: int, stage: Stage, now: datetime, endpoint: str) -> ModelVersion:
    return ModelVersion(
        model=name,
        version=number,
        stage=stage,
        status=VersionStatus.READY,
        description="",
        artifact_uri=None,
        digest=None,
        size_bytes=None,
        format="bento",
        bento_tag=None,
        apis=[ApiSpec("classify", ["input_series"])],
        endpoint=endpoint,
        run_id=None,
        source=None,
        metrics={},
        params={},
        tags={},
        created_by="scale-bench",
        created_at=now,
        updated_at=now,
        revision=1,
    )


async def seed(database_url: str, count: int, endpoint: str = ENDPOINT) -> None:
    """`count` served models (the store is created and migrated if it is new), every version
    served at `endpoint`."""
    store = await open_metadata_store(database_url, sqlite_synchronous="OFF")
    now = datetime.now(UTC)
    try:
        async with store.driver.writing() as conn:
            for i in range(count):
                name = model_name(i)
                canary = i % CANARY_EVERY == 0
                policy = TrafficPolicy(splits=[Split(version=2, weight=10.0)]) if canary else None
                latest = 2 if canary else 1
                model = Model(name, "", {}, "scale-bench", now, now, 1, latest, traffic=policy)
                found = await conn.fetch(
                    "INSERT INTO models (name, description, tags, owner, created_at,"
                    " updated_at, revision, latest_version, traffic)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                    rows.model_values(model),
                )
                model_id = int(found[0][0])
                versions = [_version(name, 1, Stage.PRODUCTION, now, endpoint)]
                if canary:
                    versions.append(_version(name, 2, Stage.STAGING, now, endpoint))
                for v in versions:
                    await conn.execute(
                        f"INSERT INTO model_versions (model_id, {_VERSION_INSERT})"
                        f" VALUES (?{', ?' * rows.VERSION_WIDTH})",
                        (model_id, *rows.version_values(v)),
                    )
    finally:
        await store.close()
