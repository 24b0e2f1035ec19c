"""Load tests with latency budgets: one command per scenario.

    python -m loadtests.loadrun steady                 # `make loadtest`
    python -m loadtests.loadrun canary [--faulty]      # a rollout of iris v2 started mid-run
    python -m loadtests.loadrun registry               # reads, promotions, alias moves
    python -m loadtests.loadrun mixed                  # inference and registry traffic at once
    python -m loadtests.loadrun steady --fault-latency-ms 200   # the example's fault switch on

Without `--host` it starts `modelyard serve` (SQLite and files in a temporary folder) with the
iris example (model `iris`, v1 in Production; its bentos built once into .cache/bentos), and
stops it at the end. With `--host URL --token T` it loads a running modelyard whose `--model`
already serves (canary uploads and stages its candidate there; registry makes its own model).

The load is locust, headless, as a subprocess (loadtests/locustfiles/<scenario>.py), on loopback
only, for the scenario's bounded time; the load shape (users, requests/s each, duration) and the
budgets come from loadtests/budgets/<scenario>.toml (see budget_check.py). In an inference run
the served version's BentoML server is also called directly (`classify direct`), to split the
time between gateway and BentoML under the same noise (time_split.py, split_measure.py;
`--no-direct` leaves it out): in steady a random share of one open-loop Poisson arrival process
(loadtests/arrivals.py, `--arrivals paced` for the earlier closed-loop users), elsewhere one more
paced user. The gateway-vs-direct comparison (p50 + 1 ms, p99 x 1.2) is printed beside the
budgets and does not change the exit code. The report goes to
loadtests/results/<scenario>-<time>.json and .png (loadreport.py); the table, and every budget
with by how much it broke, to stdout.

Exit codes: 0 every budget held; 1 a budget broke; 2 the run could not be set up or run.
"""

from __future__ import annotations

import argparse
import csv
import os
import resource
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import httpx
import msgspec

from loadtests import benchkit, loadreport, split_measure
from loadtests.budget_check import (
    BudgetFile,
    BudgetFileError,
    Load,
    Sample,
    broken,
    check,
    parse_budgets,
)
from loadtests.yard_setup import REPO, SetupError, Target, build_bentos, fault_tags
from modelyard.processes import ModelyardProcess

SCENARIOS: Final = ("steady", "canary", "registry", "mixed")
INFERENCE: Final = frozenset({"steady", "canary", "mixed"})
LOCUSTFILES: Final = REPO / "loadtests" / "locustfiles"
BUDGETS: Final = REPO / "loadtests" / "budgets"
RESULTS: Final = REPO / "loadtests" / "results"
REGISTRY_MODEL: Final = "loadtest-registry"
REGISTRY_VERSIONS: Final = 5
#: The canary's plan: quick steps so that a one-minute run sees the whole rollout.
ROLLOUT_PLAN: Final = {
    "steps": [10, 50, 100],
    "interval_s": 3,
    "min_sample_per_arm": 30,
    "max_inconclusive": 60,
    "latency_floor_ms": 25,
}
TERMINAL: Final = frozenset({"Succeeded", "RolledBack", "Aborted"})
SERVE_ENV: Final = {"MODELYARD_GATEWAY_REPORT_S": "1", "MODELYARD_ROLLOUT_TICK_S": "0.5"}
LOCUST_GRACE_S: Final = 60.0  # locust's start and stop, beyond its run time
#: open loop: arrivals stop at the load's duration, locust runs this much longer so that the
#: last requests in flight are answered (and counted) before it stops
POISSON_DRAIN_S: Final = 2.0


def say(text: str) -> None:
    print(f"[loadrun {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


# --- locust as a subprocess -----------------------------------------------------------------


@dataclass
class Phase:
    samples: list[Sample]
    seconds: float
    locust_cpu_s: float


def run_locust(
    scenario: str, host: str, load: Load, seconds: float, work: Path, env: dict[str, str]
) -> Phase:
    """locust headless on `host` for `seconds`; every request it made, from its recorder. With
    LOADRUN_DIRECT_HOST in `env`, one user more: the one calling BentoML directly."""
    users = load.users + (1 if env.get("LOADRUN_DIRECT_HOST") else 0)
    run_s = seconds
    if load.arrivals == "poisson":  # one open-loop user sends every arrival (locustfiles/steady.py)
        users, run_s = 1, seconds + POISSON_DRAIN_S
    samples_csv = work / f"samples-{scenario}-{time.monotonic_ns()}.csv"
    command = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILES / f"{scenario}.py"),
        "--headless",
        "-u",
        str(users),
        "-r",
        str(users),
        "-t",
        f"{run_s:g}s",
        "--host",
        host,
        "--only-summary",
        "--exit-code-on-error",
        "0",
        "--stop-timeout",
        "2",
        "--loglevel",
        "WARNING",
    ]
    full_env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        "LOADRUN_SAMPLES": str(samples_csv),
        "LOADRUN_RATE_PER_USER": f"{load.rate_per_user:g}",
        "LOADRUN_ARRIVALS": load.arrivals,
        "LOADRUN_GATEWAY_RATE": f"{load.rate:g}",
        "LOADRUN_DIRECT_SHARE": f"{load.direct_share:g}",
        "LOADRUN_DURATION_S": f"{seconds:g}",
        **env,
    }
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        done = subprocess.run(
            command,
            env=full_env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=run_s + LOCUST_GRACE_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise SetupError(f"locust did not stop within {run_s + LOCUST_GRACE_S:g} s") from exc
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0 or not samples_csv.exists():
        raise SetupError(f"locust failed ({done.returncode}):\n{done.stderr[-3000:]}")
    with samples_csv.open(newline="") as f:
        rows = list(csv.DictReader(f))
    samples = [
        Sample(float(r["t"]), r["name"], r["variant"], float(r["ms"]), r["ok"] == "1", r["version"])
        for r in rows
    ]
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return Phase(samples, seconds, cpu)


# --- the rollout, started mid-run and watched -----------------------------------------------


class RolloutWatch(threading.Thread):
    """Starts a rollout of `candidate` `at_s` seconds after `start()`, then records every change
    of phase or weight (epoch time) until the rollout ends or `stopping` is set."""

    def __init__(self, target: Target, model: str, candidate: int, at_s: float) -> None:
        super().__init__(daemon=True)
        self.target, self.model, self.candidate, self.at_s = target, model, candidate, at_s
        self.events: list[dict[str, Any]] = []
        self.error: str | None = None
        self.rollout: dict[str, Any] | None = None
        self.stopping = threading.Event()

    def run(self) -> None:
        try:
            self._run()
        except (httpx.HTTPError, SetupError) as exc:
            self.error = f"{type(exc).__name__}: {exc}"

    def _run(self) -> None:
        if self.stopping.wait(self.at_s):
            return
        with self.target.api() as api:
            r = api.post(
                f"/models/{self.model}/rollouts", json={"candidate": self.candidate, **ROLLOUT_PLAN}
            )
            if r.status_code != 201:
                raise SetupError(f"starting the rollout answered {r.status_code}: {r.text[:300]}")
            rollout_id, last = r.json()["id"], None
            say(f"started rollout {rollout_id} of v{self.candidate}")
            while not self.stopping.is_set():
                ro = api.get(f"/rollouts/{rollout_id}").json()["rollout"]
                now = (ro["phase"], ro["weight"])
                if now != last:
                    last = now
                    event = {"phase": ro["phase"], "weight": ro["weight"]}
                    self.events.append({"epoch": time.time(), **event, "reason": ro.get("reason")})
                    say(f"rollout {ro['phase']}: v{self.candidate} at {ro['weight']:g}%")
                self.rollout = ro
                if ro["phase"] in TERMINAL:
                    return
                self.stopping.wait(0.25)


# --- the target -----------------------------------------------------------------------------


@dataclass
class Setup:
    target: Target
    model: str
    stable: int = 0
    candidate: int | None = None
    yard_pid: int | None = None
    config: dict[str, Any] = field(default_factory=dict)


@contextmanager
def local_yard(args: argparse.Namespace) -> Iterator[Setup]:
    """`modelyard serve` in a temporary folder with the iris example served; always stopped."""
    v1, _ = build_bentos(args.bentos)
    token = "load-" + secrets.token_urlsafe(24)
    with tempfile.TemporaryDirectory(prefix="modelyard-load-") as tmp:
        yard = ModelyardProcess("serve", Path(tmp), token, extra_env=SERVE_ENV)
        try:
            say(f"started modelyard serve in {yard.start(timeout=60):.1f} s at {yard.url}")
            target = Target(yard.url, token)
            setup = Setup(target, args.model, yard_pid=yard.proc.pid if yard.proc else None)
            if args.scenario in INFERENCE:
                faults = fault_tags(args.fault_latency_ms, args.fault_error_rate)
                setup.stable = target.serve_iris(args.model, v1, faults)
                say(f"{args.model} v{setup.stable} uploaded and promoted {faults or ''}")
            yield setup
        except (httpx.HTTPError, RuntimeError, TimeoutError) as exc:
            if isinstance(exc, SetupError):
                raise
            raise SetupError(f"{exc}\n--- modelyard log (tail) ---\n{yard.output()}") from exc
        finally:
            yard.stop()


def prepare(setup: Setup, args: argparse.Namespace) -> None:
    """What every target needs for the scenario, local or not: the served version, the
    candidate (staged, its server ready, before the load starts) and the registry model."""
    t = setup.target
    if args.scenario in INFERENCE:
        setup.stable = setup.stable or t.stable_version(setup.model)
        t.wait_served(setup.model, setup.stable)
    if args.scenario == "canary":
        _, v2 = build_bentos(args.bentos)
        tags = fault_tags(error_rate=0.3) if args.faulty else {}
        setup.candidate = t.upload(setup.model, v2, tags)
        with t.api() as api:
            r = api.post(
                f"/models/{setup.model}/versions/{setup.candidate}/stage", json={"stage": "Staging"}
            )
            if not r.is_success:
                raise SetupError(f"staging v{setup.candidate}: {r.status_code} {r.text[:300]}")
        wait_server_ready(t, setup.model, setup.candidate)
        say(f"candidate v{setup.candidate} staged and ready{' (30% errors)' if tags else ''}")
    if args.scenario in ("registry", "mixed"):
        t.registry_model(REGISTRY_MODEL, REGISTRY_VERSIONS)


def wait_server_ready(target: Target, model: str, version: int, within_s: float = 120) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        found = target.server_of(model, version)
        if found is None or found.get("status") == "ready":
            return  # not run by a local deployer here: nothing to wait for
        time.sleep(0.3)
    raise SetupError(f"the server of {model} v{version} was not ready within {within_s:g} s")


# --- one run --------------------------------------------------------------------------------


def measure(setup: Setup, args: argparse.Namespace, spec: BudgetFile, work: Path) -> dict[str, Any]:
    t, load = setup.target, spec.load
    env = {
        "LOADRUN_MODEL": setup.model,
        "LOADRUN_TOKEN": t.token,
        "LOADRUN_REGISTRY_MODEL": REGISTRY_MODEL,
        "LOADRUN_REGISTRY_VERSIONS": str(REGISTRY_VERSIONS),
    }
    inference = args.scenario in INFERENCE
    endpoint, bento = (
        split_measure.bento_pids(t, setup.model, setup.stable) if inference else (None, [])
    )
    yard = [setup.yard_pid] if setup.yard_pid else []
    if args.scenario == "canary":
        bento = []  # two versions' servers serve it, one of them stops: no CPU per request
    if endpoint is not None and args.scenario != "canary" and not args.no_direct:
        env["LOADRUN_DIRECT_HOST"] = endpoint
    metrics_before = split_measure.metrics_text(t) if inference else ""
    procs_before = split_measure.read([*yard, *bento])
    since = datetime.now(UTC)
    watch = None
    if args.scenario == "canary" and setup.candidate is not None:
        watch = RolloutWatch(t, setup.model, setup.candidate, args.rollout_at_s)
        watch.start()
    shape = f"{load.users} users x {load.rate_per_user:g} req/s"
    if load.arrivals == "poisson":
        direct = (
            f", {load.direct_share:.0%} of arrivals direct" if "LOADRUN_DIRECT_HOST" in env else ""
        )
        shape = f"Poisson arrivals, {load.rate:g} req/s through the gateway{direct}"
    say(f"{args.scenario}: {shape} for {load.duration_s:g} s against {t.url}")
    main = run_locust(args.scenario, t.url, load, load.duration_s, work, env)
    procs_after = split_measure.read([*yard, *bento])
    if watch is not None:
        watch.stopping.set()
        watch.join(timeout=10)
    report: dict[str, Any] = {"events": [], "breakdown": {}}
    t0 = min((s.t for s in main.samples), default=time.time())
    if watch is not None:
        report["events"] = [
            {**{k: v for k, v in e.items() if k != "epoch"}, "t": round(e["epoch"] - t0, 2)}
            for e in watch.events
        ]
        report["rollout"] = {"final": watch.rollout, "error": watch.error}
    if inference:
        report["breakdown"] = split_measure.breakdown(
            t,
            setup.model,
            load.arrivals,
            (main.samples, main.seconds, main.locust_cpu_s),
            since,
            metrics_before,
            (yard, bento, procs_before, procs_after),
        )
    report["main"] = main
    report["t0"] = t0
    return report


def write_report(
    args: argparse.Namespace, spec: BudgetFile, setup: Setup, measured: dict[str, Any]
) -> tuple[dict[str, Any], Path, Path]:
    main: Phase = measured.pop("main")
    t0: float = measured.pop("t0")
    comparison = (measured.get("breakdown") or {}).pop("comparison", None)
    verdicts = check(main.samples, spec.budget, main.seconds)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    out_json = args.out_dir / f"{args.scenario}-{stamp}.json"
    out_png = out_json.with_suffix(".png")
    report: dict[str, Any] = {
        "kind": loadreport.KIND,
        "scenario": args.scenario,
        "started_at": datetime.fromtimestamp(t0, UTC).isoformat(),
        "machine": benchkit.machine(),
        "config": {
            "target": f"{setup.model} v{setup.stable}" if setup.stable else REGISTRY_MODEL,
            "host": setup.target.url,
            "load": msgspec.to_builtins(spec.load),
            "budgets_file": str(args.budgets),
            "fault_latency_ms": args.fault_latency_ms,
            "fault_error_rate": args.fault_error_rate,
            "faulty_candidate": args.faulty,
            "candidate": setup.candidate,
            "direct": not args.no_direct,
        },
        "summary": loadreport.summary(main.samples, main.seconds),
        "timeline": loadreport.timeline(main.samples, t0, main.seconds),
        **measured,
        "comparison": comparison,
        "budgets": loadreport.verdicts_json(verdicts),
        "passed": not broken(verdicts),
        "files": {"json": str(out_json), "png": str(out_png)},
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    benchkit.write_report(out_json, report)
    loadreport.plot(report, out_png)
    return report, out_json, out_png


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m loadtests.loadrun", description=(__doc__ or "").splitlines()[0]
    )
    p.add_argument("scenario", choices=SCENARIOS)
    p.add_argument("--host", help="a running modelyard (default: start one here)")
    p.add_argument("--token", default=os.environ.get("MODELYARD_TOKEN", ""))
    p.add_argument("--model", default="iris")
    p.add_argument("--budgets", type=Path, help="default: loadtests/budgets/<scenario>.toml")
    p.add_argument("--duration", type=float, help="seconds of load (default: the budget file's)")
    p.add_argument("--users", type=int)
    p.add_argument("--rate-per-user", type=float)
    p.add_argument(
        "--arrivals",
        choices=("paced", "poisson"),
        help="steady: one open-loop Poisson process (its default) or paced closed-loop users",
    )
    p.add_argument("--direct-share", type=float, help="poisson: share of arrivals sent direct")
    p.add_argument(
        "--fault-latency-ms",
        type=float,
        default=0.0,
        help="started here: the served version with IRIS_FAULT_LATENCY_MS",
    )
    p.add_argument("--fault-error-rate", type=float, default=0.0)
    p.add_argument("--faulty", action="store_true", help="canary: a candidate with 30%% errors")
    p.add_argument("--rollout-at-s", type=float, default=10.0)
    p.add_argument("--no-direct", action="store_true", help="no user calling BentoML directly")
    p.add_argument("--out-dir", type=Path, default=RESULTS)
    p.add_argument("--bentos", type=Path, default=REPO / ".cache" / "bentos")
    args = p.parse_args(argv)
    args.budgets = args.budgets or BUDGETS / f"{args.scenario}.toml"
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        spec = parse_budgets(args.budgets.read_text(), str(args.budgets))
    except (OSError, BudgetFileError) as exc:
        say(f"SETUP FAILED: {exc}")
        return 2
    load = msgspec.structs.replace(
        spec.load,
        **{
            k: v
            for k, v in (
                ("users", args.users),
                ("duration_s", args.duration),
                ("rate_per_user", args.rate_per_user),
                ("arrivals", args.arrivals),
                ("direct_share", args.direct_share),
            )
            if v is not None
        },
    )
    spec = msgspec.structs.replace(spec, load=load)
    try:
        with tempfile.TemporaryDirectory(prefix="modelyard-loadrun-") as tmp:
            if args.host:
                setup = Setup(Target(args.host.rstrip("/"), args.token), args.model)
                prepare(setup, args)
                measured = measure(setup, args, spec, Path(tmp))
            else:
                with local_yard(args) as setup:
                    prepare(setup, args)
                    measured = measure(setup, args, spec, Path(tmp))
            report, out_json, out_png = write_report(args, spec, setup, measured)
    except (SetupError, httpx.HTTPError, OSError) as exc:
        say(f"SETUP FAILED: {exc}")
        return 2
    print(loadreport.table(report))
    print(f"\nreport: {out_json}\nplot:   {out_png}")
    bad = [v["message"] for v in report["budgets"] if not v["passed"]]
    if bad:
        print(f"\n{len(bad)} budget(s) broken:\n" + "\n".join(f"  {m}" for m in bad))
        return 1
    print("\nevery budget held")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
