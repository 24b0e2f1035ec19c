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
   native API and through MLflow's `search_model_versions` (`name = '...'`), and MLflow's
   search with no name filter while that one model holds nearly all versions
   (`mlflow_all_one_model`: the page ends inside it);
4. MLflow's `search_model_versions` with no name filter, first page, once 1,000 more models of
   100 versions each are seeded (the registry then holds 200,000 versions in 1,002 models).

The targets are reported as PASS/MISS and the process exits 0 even when one is missed: this is
a report, not a test (shared machines are noisy). It exits 1 when anything fails outright: a
non-2xx response, a wrong answer, seeding, or a server that does not start. PostgreSQL is
skipped, with the reason in the report, when `loadtests.postgres.postgres_available()` says so.

The JSON report goes to loadtests/results/registry-bench.json unless `--out` says otherwise.

Modules: common.py (configuration, targets, statistics, the timed HTTP loop), hot.py (2.),
paging.py (3. and 4.), seeding.py (bulk rows straight into SQLite or PostgreSQL), report.py
(the table), run.py (processes, the order of the run, the command line).
"""
