"""The canary demo (`make demo`; `FAULTY=1 make demo` for a rollback).

On a fresh machine: builds the iris example's two bentos, starts `modelyard serve` (SQLite and
files in a temporary folder), uploads v1 and promotes it (modelyard starts its `bentoml serve`),
uploads v2 (with `FAULTY=1`, with its fault switch: 30 % of its answers are errors) and waits
until it serves in Staging, sends inference traffic through the gateway and starts a canary
rollout of v2 with the judge's default settings, then prints each step and verdict as the
controller takes them, until the rollout ends: promoted, or rolled back.
Everything stops at the end; nothing is left running.
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import httpx

from modelyard.processes import ModelyardProcess

ROWS: Final = {"input_series": [[5.1, 3.5, 1.4, 0.2]]}
TERMINAL: Final = ("Succeeded", "RolledBack", "Aborted", "Paused")
#: A quick plan for a demo: 25 % then 50 % of the traffic, a look every 5 s; the judge's
#: settings are its defaults (100 requests an arm before judging, alpha 0.01, no latency
#: allowance: v2 serves at v1's cost), as in `modelyard rollouts start iris --candidate 2
#: --steps 25 50 100 --interval 5`.
PLAN: Final = {"steps": [25, 50, 100], "interval_s": 5}


def say(text: str) -> None:
    print(f"[demo {time.strftime('%H:%M:%S')}] {text}", flush=True)


class Traffic(threading.Thread):
    """A client calling the gateway `rate` times a second; counts the versions that answer."""

    def __init__(self, url: str, rate: float) -> None:
        super().__init__(daemon=True)
        self.url, self.rate = url, rate
        self.served: Counter[str] = Counter()
        self.stopping = threading.Event()

    def run(self) -> None:
        with httpx.Client(timeout=10) as client:
            next_at = time.monotonic()
            while not self.stopping.is_set():
                try:
                    r = client.post(self.url, json=ROWS)
                    version = r.headers.get("x-modelyard-version", "?")
                    self.served[f"v{version} {r.status_code}"] += 1
                except httpx.HTTPError:
                    self.served["no answer"] += 1
                next_at += 1 / self.rate
                self.stopping.wait(max(0.0, next_at - time.monotonic()))


def upload(api: httpx.Client, archive: Path, tags: dict[str, str]) -> int:
    params = {"tag": [f"{k}={v}" for k, v in tags.items()]}
    with archive.open("rb") as body:
        r = api.post("/models/iris/versions/bento", content=body, params=params, timeout=120)
    r.raise_for_status()
    return int(r.json()["version"])


def wait_served(url: str, version: int, within_s: float = 120) -> None:
    """Until the gateway answers with `version` (asked for by its number)."""
    deadline = time.monotonic() + within_s
    pin = {"x-modelyard-version": str(version)}
    while time.monotonic() < deadline:
        try:
            r = httpx.post(url, json=ROWS, headers=pin, timeout=5)
            if r.status_code == 200 and r.headers.get("x-modelyard-version") == str(version):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"version {version} was not served within {within_s:g} s")


def watch(api: httpx.Client, rollout_id: str, within_s: float) -> dict[str, Any]:
    seen, weight, deadline = 0, None, time.monotonic() + within_s
    while time.monotonic() < deadline:
        view = api.get(f"/rollouts/{rollout_id}", params={"after": seen}).json()
        rollout = view["rollout"]
        if rollout["weight"] != weight:
            weight = rollout["weight"]
            say(f"{rollout['phase']}: v{rollout['spec']['candidate']} gets {weight:g}% of traffic")
        for look in view["looks"]:
            v = look["verdict"]
            b, c = v["baseline"], v["candidate"]
            outcome = v["outcome"].upper()
            say(f"  look {look['seq']} at {look['weight']:g}%: {outcome} - {v['reason']}")
            arms = [
                f"{name} {a['requests']} req, {a['errors']} err, p50 {a['p50_ms'] or 0:.1f} ms"
                for name, a in (("baseline", b), ("candidate", c))
            ]
            say("    " + " | ".join(arms))
            seen = look["seq"]
        if rollout["phase"] in TERMINAL:
            return dict(rollout)
        time.sleep(0.5)
    raise SystemExit(f"the rollout did not end within {within_s:g} s")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m examples.demo", description=__doc__)
    parser.add_argument("--faulty", action="store_true", default=os.environ.get("FAULTY") == "1")
    parser.add_argument("--rate", type=float, default=30.0, help="client requests per second")
    parser.add_argument("--bentos", type=Path, default=Path(".cache/bentos"))
    args = parser.parse_args(argv)
    say("building the iris bentos (cached after the first run)")
    script = Path(__file__).parent / "iris" / "build.py"
    built = subprocess.run(
        [sys.executable, str(script), "--out", str(args.bentos)],
        capture_output=True,
        text=True,
        check=True,
        timeout=900,
    )
    archives = dict(zip(("v1", "v2"), map(Path, built.stdout.split()), strict=True))
    token = "demo-" + secrets.token_urlsafe(24)
    env = {"MODELYARD_GATEWAY_REPORT_S": "1", "MODELYARD_ROLLOUT_TICK_S": "0.5"}
    with tempfile.TemporaryDirectory(prefix="modelyard-demo-") as tmp:
        yard = ModelyardProcess("serve", Path(tmp), token, extra_env=env)
        say(f"started modelyard serve in {yard.start():.1f} s at {yard.url}")
        traffic: Traffic | None = None
        try:
            headers = {"Authorization": f"Bearer {token}"}
            with httpx.Client(base_url=f"{yard.url}/api/v1", headers=headers, timeout=30) as api:
                api.post("/models", json={"name": "iris"}).raise_for_status()
                v1 = upload(api, archives["v1"], {})
                api.post(
                    f"/models/iris/versions/{v1}/stage", json={"stage": "Production"}
                ).raise_for_status()
                say(f"v{v1} uploaded and promoted to Production; waiting for its bentoml serve")
                url = f"{yard.url}/models/iris/classify"
                wait_served(url, v1)
                fault = {"serving.env.IRIS_FAULT_ERROR_RATE": "0.3"} if args.faulty else {}
                v2 = upload(api, archives["v2"], fault)
                say(f"v{v2} uploaded{' WITH its fault switch (30% errors)' if fault else ''}")
                api.post(
                    f"/models/iris/versions/{v2}/stage", json={"stage": "Staging"}
                ).raise_for_status()
                say(f"v{v2} moved to Staging; waiting for its bentoml serve")
                wait_served(url, v2)
                traffic = Traffic(url, args.rate)
                traffic.start()
                say(f"sending {args.rate:g} requests/s through the gateway")
                r = api.post("/models/iris/rollouts", json={"candidate": v2, **PLAN})
                r.raise_for_status()
                say(f"started rollout {r.json()['id']} of v{v2} against v{v1}: {PLAN}")
                rollout = watch(api, r.json()["id"], within_s=300)
            say(f"rollout {rollout['phase']}: {rollout.get('reason')}")
            time.sleep(2)  # a little traffic after the end, to show where it goes now
        finally:
            if traffic is not None:
                traffic.stopping.set()
                traffic.join()
                say(f"answers seen by the client: {dict(sorted(traffic.served.items()))}")
            yard.stop()
    expected = "RolledBack" if args.faulty else "Succeeded"
    return 0 if rollout["phase"] == expected else 1


if __name__ == "__main__":
    sys.exit(main())
