"""The gateway benchmark's routed leg (`gateway_canary`): the same `modelyard serve` as the
`gateway` leg, a second model whose traffic is split, and wrk sending a different sticky key on
every request.

The model `bench-canary` has version 1 in Production and version 2 in Staging, both at the
same fixed-response upstream, and the traffic policy a canary rollout sets: 10 % of the sticky
buckets to version 2, the key from the `x-user` header. wrk's Lua script cycles through
`KEYS` distinct keys (`user-0` ... ), one per request, so the gateway really hashes a key for
every request and both versions get traffic (about 10 % to the canary). Metrics are on, as
deployed. After the run, the gateway's own /metrics says how many requests each version
served (`split_counts`), which shows the split was real.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Final

import httpx

from loadtests.benchkit import BenchError
from modelyard.processes import ModelyardProcess

MODEL: Final = "bench-canary"
PATH: Final = f"/models/{MODEL}/predict"
STICKY_HEADER: Final = "x-user"
CANARY_PERCENT: Final = 10.0
KEYS: Final = 1000  # distinct sticky keys wrk cycles through
SPLIT_TIMEOUT_S: Final = 15.0
_REQUESTS_LINE: Final = re.compile(
    r"^modelyard_gateway_requests_total\{([^}]*)\} (\S+)$", re.MULTILINE
)
_LABEL: Final = re.compile(r'(\w+)="([^"]*)"')


def _api(proc: ModelyardProcess) -> httpx.Client:
    headers = {"Authorization": f"Bearer {proc.admin_token}"}
    return httpx.Client(base_url=f"{proc.url}/api/v1", headers=headers, timeout=30.0)


def _ok(response: httpx.Response) -> None:
    if not response.is_success:
        raise BenchError(
            f"{response.request.method} {response.request.url.path} answered"
            f" {response.status_code}: {response.text[:500]}"
        )


def setup(proc: ModelyardProcess, endpoint: str, body: str) -> None:
    """Register the model, its two versions and the split; return once both versions answer."""
    with _api(proc) as api:
        _ok(api.post("/models", json={"name": MODEL, "description": "benchmark: canary split"}))
        for stage in ("Production", "Staging"):
            made = api.post(f"/models/{MODEL}/versions", json={"endpoint": endpoint})
            _ok(made)
            number = made.json()["version"]
            _ok(api.post(f"/models/{MODEL}/versions/{number}/stage", json={"stage": stage}))
        policy = {
            "splits": [{"version": 2, "weight": CANARY_PERCENT}],
            "sticky": {"header": STICKY_HEADER},
        }
        _ok(api.put(f"/models/{MODEL}/traffic", json=policy))
    wait_split(proc.url + PATH, body)


def wait_split(url: str, body: str) -> None:
    """POST with changing keys until both versions have answered (the route feed carries the
    split); every answer must be a 200 from version 1 or 2."""
    deadline = time.monotonic() + SPLIT_TIMEOUT_S
    seen: set[str] = set()
    last = "no answer"
    n = 0
    with httpx.Client(timeout=10.0) as client:
        while time.monotonic() < deadline:
            n += 1
            headers = {"Content-Type": "application/json", STICKY_HEADER: f"user-{n}"}
            try:
                answer = client.post(url, content=body, headers=headers)
            except httpx.TransportError as exc:
                last = repr(exc)
                time.sleep(0.05)
                continue
            if answer.status_code == 200:
                seen.add(answer.headers.get("x-modelyard-version", "?"))
                if seen == {"1", "2"}:
                    return
                if not seen <= {"1", "2"}:
                    raise BenchError(f"POST {url}: answered by versions {sorted(seen)}")
            else:
                last = f"{answer.status_code}: {answer.text[:300]}"
                time.sleep(0.05)
    raise BenchError(
        f"POST {url}: both versions did not answer in {SPLIT_TIMEOUT_S:.0f} s"
        f" (seen {sorted(seen)}; last {last})"
    )


def lua_script(path: Path, body: str) -> Path:
    """POST `body` as JSON with `x-user: user-<n>`, n cycling through `KEYS` keys: the requests
    are formatted the first time each is sent (once wrk knows its host), then a request costs
    wrk a table lookup."""
    if "]==]" in body:
        raise ValueError("the body would end the Lua long string")
    path.write_text(
        "-- written by loadtests/canary_leg.py\n"
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = [==[{body}]==]\n"
        "local requests = {}\n"
        "local n = 0\n"
        "request = function()\n"
        f"  n = n % {KEYS} + 1\n"
        "  local found = requests[n]\n"
        "  if found == nil then\n"
        f'    wrk.headers["{STICKY_HEADER}"] = "user-" .. n\n'
        "    found = wrk.format()\n"
        "    requests[n] = found\n"
        "  end\n"
        "  return found\n"
        "end\n"
    )
    return path


def split_counts(url: str) -> dict[str, int]:
    """Requests per version of `MODEL` since the gateway started, from its /metrics."""
    return parse_split(httpx.get(url + "/metrics", timeout=10.0).text)


def parse_split(text: str) -> dict[str, int]:
    """Requests per version of `MODEL` in a Prometheus exposition (any label order)."""
    counts: dict[str, int] = {}
    for labels, value in _REQUESTS_LINE.findall(text):
        found = dict(_LABEL.findall(labels))
        if found.get("model") == MODEL:
            version = found["version"]
            counts[version] = counts.get(version, 0) + int(float(value))
    return counts
