"""Versioned schema migrations, written once for SQLite and PostgreSQL, and how they apply.

`{pk}` becomes the dialect's auto-increment primary key. Times are integer microseconds since
the epoch (UTC), JSON is text: the same rows read the same on both stores.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

from adapters.sql.driver import Dialect, SqlDriver
from adapters.sql.rows import to_micros

MIGRATIONS: Final[list[tuple[int, str]]] = [
    (
        1,
        """
CREATE TABLE models (
    id {pk},
    name TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL,
    tags TEXT NOT NULL,
    owner TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    revision BIGINT NOT NULL,
    latest_version BIGINT NOT NULL
);
CREATE TABLE model_versions (
    model_id BIGINT NOT NULL REFERENCES models(id),
    version BIGINT NOT NULL,
    stage TEXT NOT NULL,
    status TEXT NOT NULL,
    description TEXT NOT NULL,
    artifact_uri TEXT,
    digest TEXT,
    size_bytes BIGINT,
    format TEXT NOT NULL,
    bento_tag TEXT,
    apis TEXT NOT NULL,
    endpoint TEXT,
    run_id TEXT,
    source TEXT,
    metrics TEXT NOT NULL,
    params TEXT NOT NULL,
    tags TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    revision BIGINT NOT NULL,
    PRIMARY KEY (model_id, version)
);
CREATE INDEX model_versions_stage ON model_versions (model_id, stage);
CREATE INDEX model_versions_run ON model_versions (run_id);
CREATE UNIQUE INDEX model_versions_one_production ON model_versions (model_id)
    WHERE stage = 'Production';
CREATE TABLE aliases (
    model_id BIGINT NOT NULL REFERENCES models(id),
    alias TEXT NOT NULL,
    version BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (model_id, alias),
    FOREIGN KEY (model_id, version) REFERENCES model_versions (model_id, version)
);
CREATE TABLE audit_heads (
    scope TEXT PRIMARY KEY,
    seq BIGINT NOT NULL,
    hash TEXT NOT NULL
);
CREATE TABLE audit_events (
    scope TEXT NOT NULL,
    seq BIGINT NOT NULL,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    model TEXT,
    version BIGINT,
    alias TEXT,
    before TEXT,
    after TEXT,
    reason TEXT,
    request_id TEXT,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL,
    PRIMARY KEY (scope, seq)
);
CREATE INDEX audit_events_version ON audit_events (scope, version, seq);
CREATE INDEX audit_events_alias ON audit_events (scope, alias, at);
CREATE TABLE idempotency_keys (
    principal_id BIGINT NOT NULL,
    key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    status INTEGER NOT NULL,
    body TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (principal_id, key)
);
CREATE TABLE tokens (
    id {pk},
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
)
""",
    ),
    (2, "ALTER TABLE models ADD COLUMN traffic TEXT"),  # the model's TrafficPolicy (JSON)
    (
        3,
        """
CREATE TABLE traffic_windows (
    id {pk},
    model TEXT NOT NULL,
    version BIGINT NOT NULL,
    variant TEXT NOT NULL,
    source TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    requests BIGINT NOT NULL,
    errors BIGINT NOT NULL,
    latencies_ms TEXT NOT NULL
);
CREATE INDEX traffic_windows_model ON traffic_windows (model, received_at)
""",
    ),
    (
        4,
        """
ALTER TABLE traffic_windows ADD COLUMN compared BIGINT NOT NULL DEFAULT 0;
ALTER TABLE traffic_windows ADD COLUMN agreed BIGINT NOT NULL DEFAULT 0;
CREATE TABLE rollouts (
    id TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    phase TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX rollouts_one_active ON rollouts (model)
    WHERE phase IN ('Pending', 'Progressing', 'Paused', 'Promoting');
CREATE INDEX rollouts_by_model ON rollouts (model, created_at);
CREATE TABLE rollout_looks (
    rollout_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    at BIGINT NOT NULL,
    look TEXT NOT NULL,
    PRIMARY KEY (rollout_id, seq)
)
""",
    ),
    (
        5,
        """
CREATE TABLE webhooks (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    url TEXT NOT NULL,
    events TEXT NOT NULL,
    secret TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE TABLE webhook_outbox (
    id {pk},
    webhook_id TEXT NOT NULL,
    delivery_id TEXT NOT NULL,
    event TEXT NOT NULL,
    payload TEXT NOT NULL,
    scope TEXT NOT NULL,
    seq BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    attempts INTEGER NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    lease_until BIGINT NOT NULL,
    delivered_at BIGINT,
    failed_at BIGINT,
    last_status INTEGER,
    last_error TEXT
);
CREATE INDEX webhook_outbox_due ON webhook_outbox (next_attempt_at, id)
    WHERE delivered_at IS NULL AND failed_at IS NULL
""",
    ),
    (
        6,
        """
CREATE TABLE experiments (
    id TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    phase TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX experiments_one_running ON experiments (model) WHERE phase = 'Running';
CREATE INDEX experiments_by_model ON experiments (model, created_at);
CREATE TABLE experiment_outcomes (
    experiment_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    n BIGINT NOT NULL,
    total DOUBLE PRECISION NOT NULL,
    total_sq DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (experiment_id, version)
)
""",
    ),
    (
        7,
        """
CREATE INDEX traffic_windows_received ON traffic_windows (received_at)
""",
    ),
    (
        8,
        """
CREATE TABLE ui_sessions (
    id_hash TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL,
    csrf TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    idle_until BIGINT NOT NULL,
    flash TEXT
)
""",
    ),
    (
        9,
        # what an MLflow 3 client sends with a version it registers: the logged model it came
        # from (`model_id` in MLflow's API; `model_id` here is already the models row) and a
        # link to its run
        """
ALTER TABLE model_versions ADD COLUMN logged_model_id TEXT;
ALTER TABLE model_versions ADD COLUMN run_link TEXT
""",
    ),
    (
        10,
        # MLflow's searches ordered by time (adapters/sql/search.py): within a model and across
        # the registry; by name they walk models(name) and the versions' primary key
        """
CREATE INDEX model_versions_created ON model_versions (model_id, created_at);
CREATE INDEX model_versions_updated ON model_versions (model_id, updated_at);
CREATE INDEX model_versions_all_created ON model_versions (created_at);
CREATE INDEX model_versions_all_updated ON model_versions (updated_at);
CREATE INDEX models_created ON models (created_at);
CREATE INDEX models_updated ON models (updated_at)
""",
    ),
    (
        11,
        # a model's newest version in a stage (MLflow's latest_versions, for a whole page of
        # models at once: adapters/sql/catalog.py) is one probe; it covers the old index's uses
        """
CREATE INDEX model_versions_stage_version ON model_versions (model_id, stage, version);
DROP INDEX model_versions_stage
""",
    ),
    (
        12,
        # the route feed (adapters/sql/routes.py): one clock ticked by every change to a model,
        # in commit order, each model's chain head stamped with it; and the versions served by
        # an outside endpoint, found without reading a model's every version
        """
CREATE TABLE route_clock (
    id INTEGER PRIMARY KEY,
    n BIGINT NOT NULL
);
INSERT INTO route_clock (id, n) VALUES (1, 0);
ALTER TABLE audit_heads ADD COLUMN clock BIGINT NOT NULL DEFAULT 0;
CREATE INDEX audit_heads_clock ON audit_heads (clock);
CREATE INDEX model_versions_endpoint ON model_versions (model_id) WHERE endpoint IS NOT NULL
""",
    ),
    (
        13,
        # CUPED: of an arm's outcomes that came with a pre-experiment covariate x, their count
        # and the sums of x, x^2 and x times the outcome (registry/experiments/cuped.py)
        """
ALTER TABLE experiment_outcomes ADD COLUMN cov_n BIGINT NOT NULL DEFAULT 0;
ALTER TABLE experiment_outcomes ADD COLUMN cov_total DOUBLE PRECISION NOT NULL DEFAULT 0;
ALTER TABLE experiment_outcomes ADD COLUMN cov_total_sq DOUBLE PRECISION NOT NULL DEFAULT 0;
ALTER TABLE experiment_outcomes ADD COLUMN cov_cross DOUBLE PRECISION NOT NULL DEFAULT 0
""",
    ),
    (
        14,
        # an experiment's reads over time (registry.experiments.stats.Read as JSON), for the
        # console's charts; one a change, at most every `experiment_read_s`
        """
CREATE TABLE experiment_reads (
    experiment_id TEXT NOT NULL,
    at BIGINT NOT NULL,
    state TEXT NOT NULL,
    PRIMARY KEY (experiment_id, at)
)
""",
    ),
]

CREATE_MIGRATIONS_TABLE: Final = (
    "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT)"
)


def statements(dialect: Dialect, sql: str) -> list[str]:
    """Split one migration into statements, with the dialect's spellings filled in."""
    text = sql.replace("{pk}", dialect.auto_id)
    return [part.strip() for part in text.split(";") if part.strip()]


async def migrate(driver: SqlDriver, now: datetime) -> list[int]:
    """Apply the migrations not yet applied, in one transaction under the schema lock; returns
    their numbers."""
    applied: list[int] = []
    async with driver.writing() as conn:
        # the lock first: on an empty PostgreSQL database two replicas creating the migrations
        # table at once collide in the catalog (`pg_type_typname_nsp_index`) even with
        # IF NOT EXISTS; SQLite's `writing` already holds the file's write lock here
        if driver.dialect.schema_lock is not None:
            await conn.execute(driver.dialect.schema_lock)
        await conn.execute(CREATE_MIGRATIONS_TABLE)
        done = {r[0] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for number, sql in MIGRATIONS:
            if number in done:
                continue
            for statement in statements(driver.dialect, sql):
                await conn.execute(statement)
            await conn.execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)",
                (number, to_micros(now)),
            )
            applied.append(number)
    return applied
