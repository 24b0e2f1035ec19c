"""The run: per store, a registry child process, the measurements in order, the JSON report."""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import tempfile
import traceback
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import asdict
from pathlib import Path
from typing import Any

import httpx

import loadtests.registry_bench as package
from loadtests.benchkit import BenchError, machine, pin_threads, say, write_report
from loadtests.light_http import LightClient
from loadtests.postgres import fresh_postgres_database, postgres_available
from loadtests.registry_bench import hot, paging
from loadtests.registry_bench.common import (
    DEFAULT_OUT,
    HOT_MODEL,
    HOT_VERSIONS,
    PAGE_MODEL,
    REQUEST_TIMEOUT_S,
    STORES,
    TARGETS,
    Config,
    create_model,
    create_version,
    judge,
    latency_summary,
)
from loadtests.registry_bench.report import table
from loadtests.registry_bench.seeding import seed, seed_models
from modelyard.processes import ModelyardProcess

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
            "livez": hot.bench_livez(client, cfg),
            "promote": hot.bench_promote(client, cfg, versions),
            "set_alias": hot.bench_set_alias(client, cfg, versions),
            "get_by_alias": hot.bench_get_by_alias(client, cfg),
        }
        create_model(client, PAGE_MODEL)
        seed_s = seed(store, proc, cfg.seed_versions)
        ops["first_page"] = paging.bench_first_page(client, cfg, cfg.seed_versions)
        ops["mlflow_first_page"] = paging.bench_mlflow_first_page(client, cfg, cfg.seed_versions)
        ops["mlflow_all_one_model"] = paging.bench_mlflow_all_one_model(
            client, cfg, cfg.seed_versions
        )
        models_s = seed_models(store, proc, cfg)
        ops["mlflow_all_models"] = paging.bench_mlflow_all_models(client, cfg)
    results: dict[str, Any] = {}
    for name, samples in ops.items():
        results[name] = latency_summary(samples)
        judge(name, store, results[name])
    results["first_page"] |= {"seeded_versions": cfg.seed_versions, "seed_s": round(seed_s, 4)}
    results["mlflow_first_page"] |= {"seeded_versions": cfg.seed_versions}
    results["mlflow_all_one_model"] |= {"seeded_versions": cfg.seed_versions}
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


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.registry_bench",
        description=package.__doc__.splitlines()[0] if package.__doc__ else None,
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
