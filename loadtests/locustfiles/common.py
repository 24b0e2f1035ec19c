"""What the scenarios share: settings from the environment (set by loadtests/loadrun.py), the
iris request, and a recorder that keeps every request (start, name, variant, time, outcome) and
writes them to the CSV file named by LOADRUN_SAMPLES when the run stops.

Imported only inside locust's own process (gevent patches it); never by the test suite.
"""

from __future__ import annotations

import csv
import os
import time
from typing import Any, Final

from locust import events

MODEL: Final = os.environ.get("LOADRUN_MODEL", "iris")
TOKEN: Final = os.environ.get("LOADRUN_TOKEN", "")
RATE_PER_USER: Final = float(os.environ.get("LOADRUN_RATE_PER_USER", "5"))
#: through the gateway; loadrun.py points it at BentoML's `/classify` for the direct phase
INFER_PATH: Final = os.environ.get("LOADRUN_INFER_PATH") or f"/models/{MODEL}/classify"
#: loadrun.py sets it to the served version's BentoML URL: the direct path calls it
DIRECT_HOST: Final = os.environ.get("LOADRUN_DIRECT_HOST", "")
REGISTRY_MODEL: Final = os.environ.get("LOADRUN_REGISTRY_MODEL", "loadtest-registry")
REGISTRY_VERSIONS: Final = int(os.environ.get("LOADRUN_REGISTRY_VERSIONS", "5"))
SAMPLES: Final = os.environ.get("LOADRUN_SAMPLES", "")
#: the open-loop arrival process (steady.py): the gateway path's mean rate, the share of the
#: arrivals sent directly to BentoML, the cap on requests in flight, the RNG's seed, the seconds
ARRIVALS: Final = os.environ.get("LOADRUN_ARRIVALS", "paced")
GATEWAY_RATE: Final = float(os.environ.get("LOADRUN_GATEWAY_RATE", "40"))
DIRECT_SHARE: Final = float(os.environ.get("LOADRUN_DIRECT_SHARE", "0"))
MAX_IN_FLIGHT: Final = int(os.environ.get("LOADRUN_MAX_IN_FLIGHT", "64"))
SEED: Final = int(os.environ["LOADRUN_SEED"]) if os.environ.get("LOADRUN_SEED") else None
DURATION_S: Final = float(os.environ.get("LOADRUN_DURATION_S", "60"))

IRIS_BODY: Final = '{"input_series": [[5.1, 3.5, 1.4, 0.2]]}'
JSON_HEADERS: Final = {"Content-Type": "application/json"}
AUTH_HEADERS: Final = {"Authorization": f"Bearer {TOKEN}", **JSON_HEADERS}
VARIANT_HEADER: Final = "x-modelyard-variant"
VERSION_HEADER: Final = "x-modelyard-version"

_rows: list[tuple[float, str, str, float, int, str]] = []


@events.request.add_listener
def _record(
    name: str,
    response_time: float,
    response: Any = None,
    exception: BaseException | None = None,
    start_time: float | None = None,
    **_: Any,
) -> None:
    variant = version = ""
    if response is not None and getattr(response, "headers", None) is not None:
        variant = response.headers.get(VARIANT_HEADER) or ""
        version = response.headers.get(VERSION_HEADER) or ""
    ok = int(exception is None)
    _rows.append((start_time or 0.0, name, variant, response_time, ok, version))


def record_over_cap(name: str) -> None:
    """An arrival not sent because the cap on requests in flight was reached."""
    _rows.append((time.time(), f"{name} (over the cap)", "", 0.0, 0, ""))


@events.test_stop.add_listener
def _write(**_: Any) -> None:
    if not SAMPLES:
        return
    with open(SAMPLES, "w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(("t", "name", "variant", "ms", "ok", "version"))
        writer.writerows((f"{t:.6f}", n, v, f"{ms:.3f}", ok, ver) for t, n, v, ms, ok, ver in _rows)
