"""The route feed and the control loop at scale (issue 19): `make bench-scale`.

    python -m loadtests.scale_bench                       # 1,000 and 10,000 models, both stores
    python -m loadtests.scale_bench --models 1000 --stores sqlite --gateways 10   # a quick look

For each store (SQLite with one registry process; PostgreSQL with two replicas on one
database) and each table size, against real `modelyard registry` processes over HTTP:

1. **first full table**: one client asks `GET /api/v1/routes` (`after=-1`) 5 times; the time to
   the decoded table, median and max;
2. **one change, 50 gateways**: 50 simulated gateways (one HTTP connection each, spread over the
   replicas) long-poll the feed and apply what it sends; 20 alias changes to random models, one
   at a time; for each, the time from sending the change to each gateway's table having it, and
   the CPU the registry processes spent (from /proc) per change;
3. **windows**: 50 gateways each report windows for 100 active models every 2 s for 20 s;
   the registry processes' CPU as a share of one core;
4. **a real gateway's memory**: `modelyard gateway` following the registry, its RSS once its
   table holds every model.

The models (loadtests/scale_seed.py) have one Production version each with an outside
endpoint, 1 % a canary split. The JSON report goes to loadtests/results/scale-bench.json.
Targets are reported as PASS/MISS (a report, not a test); the exit status is 1 only when
something fails outright.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import secrets
import statistics
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

import httpx
import msgspec

from contract.routes import RouteChanges, RouteTable, apply_changes
from contract.windows import TrafficWindow, WindowReport
from loadtests.benchkit import (
    BenchError,
    cpu_seconds,
    cpu_used,
    machine,
    rss_mb,
    say,
    write_report,
)
from loadtests.postgres import fresh_postgres_database
from loadtests.scale_seed import model_name, seed
from modelyard.processes import ModelyardProcess

DEFAULT_OUT: Final = Path(__file__).parent / "results" / "scale-bench.json"
SIZES: Final = (1_000, 10_000)
#: Each figure (where it is in a run's row) and its upper limit.
TARGETS: Final = {
    "change.p99_s": 1.0,
    "change.cpu_per_change_ms": 50.0,
    "first_table.median_s": 1.0,
    "windows.cpu_share": 0.20,
}
MODELS_GAUGE: Final = "modelyard_gateway_route_models "
CHANGE_TIMEOUT_S: Final = 60.0  # a gateway without the change by then counts as missed
_changes = msgspec.json.Decoder(RouteChanges)


class SimGateway:
    """A gateway as the feed sees it: one connection, long-polling, applying deltas."""

    def __init__(self, url: str, token: str) -> None:
        headers = {"Authorization": f"Bearer {token}"}
        self.client = httpx.AsyncClient(base_url=url, headers=headers, timeout=60.0)
        self.table: RouteTable | None = None
        self.changed = asyncio.Event()

    async def follow(self) -> None:
        while True:
            after = self.table.revision if self.table is not None else -1
            r = await self.client.get("/api/v1/routes", params={"after": after, "wait_s": 20})
            if r.status_code == 204:
                continue
            r.raise_for_status()
            self.table = apply_changes(self.table, _changes.decode(r.content))
            self.changed.set()

    async def has(self, model: str, alias: str, version: int) -> float:
        """Wait until the table has the alias; returns when (perf_counter)."""
        while True:
            self.changed.clear()
            table = self.table
            if table is not None and table.models[model].aliases.get(alias) == version:
                return time.perf_counter()
            await self.changed.wait()


async def first_table(url: str, token: str, runs: int = 5) -> dict[str, Any]:
    samples: list[float] = []
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60.0) as client:
        for _ in range(runs):
            started = time.perf_counter()
            r = await client.get("/api/v1/routes", params={"after": -1})
            r.raise_for_status()
            models = len(_changes.decode(r.content).models)
            samples.append(time.perf_counter() - started)
    return {
        "median_s": statistics.median(samples),
        "max_s": max(samples),
        "models": models,
        "bytes": len(r.content),
    }


async def changes(
    urls: Sequence[str], token: str, pids: Sequence[int], count: int, gateways: int, rounds: int
) -> dict[str, Any]:
    sims = [SimGateway(urls[i % len(urls)], token) for i in range(gateways)]
    tasks = [asyncio.ensure_future(s.follow()) for s in sims]
    headers = {"Authorization": f"Bearer {token}"}
    writer = httpx.AsyncClient(base_url=urls[0], headers=headers, timeout=30.0)
    try:
        deadline = time.perf_counter() + 120
        while any(s.table is None for s in sims):
            if time.perf_counter() > deadline:
                raise BenchError("not every gateway got its first table within 120 s")
            await asyncio.sleep(0.05)
        rng = random.Random(19)
        delays: list[float] = []
        cpu, missed = 0.0, 0
        for j in range(rounds):
            model, alias = model_name(rng.randrange(count)), f"bench{j}"
            before = cpu_seconds(pids)
            sent = time.perf_counter()
            r = await writer.put(f"/api/v1/models/{model}/aliases/{alias}", json={"version": 1})
            r.raise_for_status()
            waits = [asyncio.ensure_future(s.has(model, alias, 1)) for s in sims]
            done, late = await asyncio.wait(waits, timeout=CHANGE_TIMEOUT_S)
            for task in late:
                task.cancel()
            cpu += cpu_used(before, cpu_seconds(pids))
            delays += [t.result() - sent for t in done]
            missed += len(late)
            delays += [CHANGE_TIMEOUT_S] * len(late)  # at least that: counted, not dropped
        delays.sort()
        return {
            "gateways": gateways,
            "changes": rounds,
            "p50_s": delays[len(delays) // 2],
            "p99_s": delays[min(len(delays) - 1, int(len(delays) * 0.99))],
            "max_s": delays[-1],
            "cpu_per_change_ms": 1000 * cpu / rounds,
            "missed": missed,  # gateways that did not have a change within CHANGE_TIMEOUT_S
        }
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for s in sims:
            await s.client.aclose()
        await writer.aclose()


async def windows(
    urls: Sequence[str], token: str, pids: Sequence[int], gateways: int, seconds: float
) -> dict[str, Any]:
    rng = random.Random(7)
    headers = {"Authorization": f"Bearer {token}", "content-type": "application/json"}

    def report(g: int) -> bytes:
        windows = [
            TrafficWindow(
                model_name(m), 1, "stable", 40, 1, [rng.uniform(5, 30) for _ in range(40)]
            )
            for m in range(100)
        ]
        return msgspec.json.encode(WindowReport(f"sim-{g}", windows))

    async def one(g: int, client: httpx.AsyncClient, stop: float) -> int:
        sent = 0
        await asyncio.sleep(2.0 * g / gateways)  # spread over the interval, as real ones are
        while time.perf_counter() < stop:
            r = await client.post("/api/v1/windows", content=report(g))
            r.raise_for_status()
            sent += 1
            await asyncio.sleep(2.0)
        return sent

    clients = [
        httpx.AsyncClient(base_url=urls[g % len(urls)], headers=headers, timeout=30.0)
        for g in range(gateways)
    ]
    try:
        before, started = cpu_seconds(pids), time.perf_counter()
        stop = started + seconds
        sent = await asyncio.gather(*(one(g, c, stop) for g, c in enumerate(clients)))
        elapsed = time.perf_counter() - started
        share = cpu_used(before, cpu_seconds(pids)) / elapsed
    finally:
        for c in clients:
            await c.aclose()
    return {"gateways": gateways, "models": 100, "reports": sum(sent), "cpu_share": share}


def gateway_memory(registry: ModelyardProcess, tmp: Path, token: str, count: int) -> dict[str, Any]:
    """A real `modelyard gateway` following the registry: its RSS once it has the whole table
    (`modelyard_gateway_route_models`), beside its RSS with no table at all."""
    env = {"MODELYARD_REGISTRY_URL": registry.url, "MODELYARD_REGISTRY_TOKEN": token}
    proc = ModelyardProcess("gateway", tmp / f"gateway-{registry.port}", token, extra_env=env)
    try:
        proc.start(until="live")
        assert proc.proc is not None
        deadline = time.perf_counter() + 60
        with httpx.Client(timeout=10.0) as client:
            while True:
                metrics = client.get(f"{proc.url}/metrics").text
                line = next(x for x in metrics.splitlines() if x.startswith(MODELS_GAUGE))
                if float(line.split()[-1]) >= count:
                    break
                if time.perf_counter() > deadline:
                    raise BenchError(f"the gateway did not get {count} models in 60 s: {line}")
                time.sleep(0.2)
        return {"models": count, "rss_mb": rss_mb(proc.proc.pid)}
    finally:
        proc.stop()


@contextmanager
def registries(
    store: str, workdir: Path, token: str, count: int, code: Path | None
) -> Iterator[list[ModelyardProcess]]:
    """The registry processes of one configuration over a seeded store, stopped on the way out."""
    with ExitStack() as stack:
        url = stack.enter_context(
            fresh_postgres_database() if store == "postgres" else nullcontext("")
        )
        data = workdir / f"{store}-{count}-{'before' if code else 'now'}"
        database = url or f"sqlite:///{data / 'modelyard.db'}"
        data.mkdir(parents=True)
        asyncio.run(seed(database, count))
        procs = []
        for i in range(2 if store == "postgres" else 1):
            proc = ModelyardProcess(
                role="registry",
                data_dir=data / f"r{i}",
                admin_token=token,
                database_url=database,
                cwd=code,  # None: this checkout's code
            )
            stack.callback(proc.stop)
            proc.start()
            procs.append(proc)
        yield procs


@dataclass(frozen=True)
class Plan:
    gateways: int = 50  # simulated gateways long-polling, and reporting windows
    changes: int = 20
    window_s: float = 20.0  # how long the windows phase lasts


def run(
    stores: Sequence[str], sizes: Sequence[int], plan: Plan, before: Path | None = None
) -> dict[str, Any]:
    """Every store and size; with `before` (another checkout), that code's registry is
    measured right before this one's, on the same seeded data, for a side-by-side."""
    token = secrets.token_urlsafe(24)
    results: dict[str, Any] = {
        "machine": machine(),
        "plan": asdict(plan),
        "targets": TARGETS,
        "runs": [],
    }
    codes: list[Path | None] = [before, None] if before is not None else [None]
    with tempfile.TemporaryDirectory(prefix="scale-bench-") as tmp:
        for store in stores:
            for count in sizes:
                for code in codes:
                    label = "before" if code is not None else "now"
                    say(f"{store}, {count} models ({label}): seeding and starting")
                    with registries(store, Path(tmp), token, count, code) as procs:
                        row = one_run(procs, Path(tmp), token, count, plan)
                    row |= {"store": store, "code": label, "verdicts": verdicts(row)}
                    say(summary(row))
                    results["runs"].append(row)
    results["growth"] = growth(results["runs"])
    for line in results["growth"]:
        say(line)
    return results


def figure(row: dict[str, Any], where: str) -> float:
    part, key = where.split(".")
    return float(row[part][key])


def verdicts(row: dict[str, Any]) -> dict[str, str]:
    return {w: "PASS" if figure(row, w) <= limit else "MISS" for w, limit in TARGETS.items()}


def growth(runs: Sequence[dict[str, Any]]) -> list[str]:
    """How each figure grows from the smallest table to the largest, per store and code."""
    lines = []
    for key in sorted({(r["store"], r["code"]) for r in runs}):
        mine = sorted(
            (r for r in runs if (r["store"], r["code"]) == key), key=lambda r: r["models"]
        )
        if len(mine) < 2:
            continue
        small, large = mine[0], mine[-1]
        ratios = ", ".join(
            f"{w} x{figure(large, w) / figure(small, w):.2f}" if figure(small, w) else f"{w} -"
            for w in TARGETS
        )
        lines.append(f"{key[0]} {key[1]}: {small['models']} -> {large['models']} models: {ratios}")
    return lines


def one_run(
    procs: Sequence[ModelyardProcess], tmp: Path, token: str, count: int, plan: Plan
) -> dict[str, Any]:
    urls = [p.url for p in procs]
    pids = [p.proc.pid for p in procs if p.proc is not None]
    return {
        "models": count,
        "replicas": len(procs),
        "first_table": asyncio.run(first_table(urls[0], token)),
        "change": asyncio.run(changes(urls, token, pids, count, plan.gateways, plan.changes)),
        "windows": asyncio.run(windows(urls, token, pids, plan.gateways, plan.window_s)),
        "gateway": gateway_memory(procs[0], tmp, token, count),
    }


def summary(row: dict[str, Any]) -> str:
    c, f, w = row["change"], row["first_table"], row["windows"]
    return (
        f"{row['store']:8} {row['code']:6} {row['models']:>6} models x{row['replicas']}:"
        " first table"
        f" {f['median_s'] * 1000:.0f} ms ({f['bytes'] / 1e6:.1f} MB); change to {c['gateways']}"
        f" gateways p50 {c['p50_s'] * 1000:.0f} ms p99 {c['p99_s'] * 1000:.0f} ms; registry CPU"
        f" {c['cpu_per_change_ms']:.1f} ms/change; windows CPU {w['cpu_share'] * 100:.1f} %;"
        f" gateway RSS {row['gateway']['rss_mb']:.0f} MB;"
        f" {sum(v == 'PASS' for v in row['verdicts'].values())}/{len(TARGETS)} targets met"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--stores", nargs="+", default=["sqlite", "postgres"])
    parser.add_argument("--models", nargs="+", type=int, default=list(SIZES))
    parser.add_argument("--gateways", type=int, default=50)
    parser.add_argument("--changes", type=int, default=20)
    parser.add_argument("--window-s", type=float, default=20.0, help="the windows phase")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--before", type=Path, help="a checkout to measure side by side")
    args = parser.parse_args(argv)
    try:
        plan = Plan(args.gateways, args.changes, args.window_s)
        report = run(args.stores, args.models, plan, args.before)
    except (BenchError, RuntimeError, TimeoutError, httpx.HTTPError) as exc:
        say(f"FAILED: {type(exc).__name__}: {exc}")
        return 1
    write_report(args.out, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
