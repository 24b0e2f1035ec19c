"""The metadata store in SQL (SQLite, the embedded default, or PostgreSQL), written once.

    store.py         SqlStore (the registry's MetadataStore) and open_metadata_store(url)
    driver.py        the driver interface (SqlDriver, SqlConn) and the Dialect it speaks
    sqlite.py        the SQLite driver: WAL, one writer thread, a few reader threads
    postgres.py      the PostgreSQL driver, on an asyncpg pool
    schema.py        the versioned migrations and how they apply
    rows.py          rows to Structs and back
    changes.py       transact: one model's decision applied in one transaction
    catalog.py       models, versions and aliases (reads)
    audit.py         the hash-chained audit log: heads, appends, reads
    tokens.py        API tokens
    windows.py       traffic windows reported by the gateways
    rollouts.py      rollouts and their looks
    experiments.py   experiments and their outcome sums
    webhooks.py      webhook subscriptions and the outbox (SqlWebhooks)
    sessions.py      console sessions (SqlSessions)
    database_url.py  what a store URL names (pure)
    leadership.py    the lock electing the replica that drives rollouts

Nothing is imported here: `adapters.sql.database_url` stays light for the settings.
"""
