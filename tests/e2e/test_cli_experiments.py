"""`modelyard experiments` against a real `modelyard serve` whose versions are two small HTTP
upstreams (no BentoML): start (and --quiet in a script), list, traffic through the gateway,
feedback from a file and from piped stdin, show, stop with promote; a bad line refused with
its number and nothing recorded; a large file sent in batches the API accepts."""

from __future__ import annotations

import json
import os
import pty
import re
import secrets
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from modelyard.cli import outcome_lines
from modelyard.cli.main import main
from modelyard.processes import ModelyardProcess
from tests.http_threads import serving

pytestmark = pytest.mark.e2e

ADMIN = "myd_test_" + secrets.token_urlsafe(32)
BIN = Path(sys.executable).parent  # the venv's `modelyard` script


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


@pytest.fixture(scope="module")
def upstreams() -> Iterator[list[str]]:
    """Two keep-alive HTTP servers (threads) standing for versions 1 and 2: a POST gets
    `{"version": N}`, a GET 200 (a readiness probe)."""
    with ExitStack() as stack:
        yield [stack.enter_context(serving(handler(version))) for version in (1, 2)]


def handler(version: int) -> type[BaseHTTPRequestHandler]:
    """Answers a POST with `{"version": N}`, a GET with 200."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True
        answer = json.dumps({"version": version}).encode()

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", "0")))
            self._send(self.answer)

        def do_GET(self) -> None:
            self._send(b"{}")

        def _send(self, body: bytes) -> None:
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture(scope="module")
def yard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModelyardProcess]:
    proc = ModelyardProcess("serve", tmp_path_factory.mktemp("yard"), ADMIN)
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(autouse=True)
def env(yard: ModelyardProcess, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("MODELYARD_URL", yard.url)
    monkeypatch.setenv("MODELYARD_TOKEN", ADMIN)
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> Run:
    """`modelyard ARGS...` in this process (URL and token from the environment)."""
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return Run(code, out, err)


def shell(env: dict[str, str], script: str, stdin: bytes = b"") -> Run:
    """A bash script calling the real `modelyard` executable, as a user's script would."""
    done = subprocess.run(
        ["bash", "-c", script], input=stdin, env=env, capture_output=True, timeout=60, check=False
    )
    return Run(done.returncode, done.stdout.decode(), done.stderr.decode())


def model_on(capsys: pytest.CaptureFixture[str], upstreams: list[str]) -> str:
    """A new model with versions 1 (Production) and 2, each on its upstream."""
    name = f"m-{uuid.uuid4().hex[:10]}"
    assert cli(capsys, "models", "create", name).code == 0
    for url in upstreams:
        created = cli(capsys, "versions", "create", name, "--endpoint", url)
        assert created.code == 0, created.err
    assert cli(capsys, "stage", name, "1", "production").code == 0
    return name


def results(capsys: pytest.CaptureFixture[str], experiment_id: str) -> dict[str, Any]:
    shown = cli(capsys, "experiments", "show", experiment_id, "--json")
    assert shown.code == 0, shown.err
    return dict(shown.json()["results"])


def recorded(capsys: pytest.CaptureFixture[str], experiment_id: str) -> dict[int, int]:
    return {a["version"]: a["n"] for a in results(capsys, experiment_id)["arms"]}


def served_routes(yard: ModelyardProcess) -> None:
    """Wait until the gateway serves the registry's current routes."""
    with httpx.Client(headers={"Authorization": f"Bearer {ADMIN}"}, timeout=10) as c:
        revision = c.get(f"{yard.url}/api/v1/routes").json()["revision"]
        deadline = time.monotonic() + 15
        while c.get(f"{yard.url}/v2/health/ready").json()["revision"] < revision:
            assert time.monotonic() < deadline, f"the gateway never served revision {revision}"
            time.sleep(0.02)


def test_an_experiment_from_start_to_promotion(
    capsys: pytest.CaptureFixture[str],
    upstreams: list[str],
    yard: ModelyardProcess,
    env: dict[str, str],
    tmp_path: Path,
) -> None:
    name = model_on(capsys, upstreams)
    script = (
        f"EX=$(modelyard experiments start {name} --arms 1=50 2=50 --sticky-header x-user"
        ' --min-sample 100 --quiet) && echo "id=$EX"'
    )
    started = shell(env, script)
    assert started.code == 0, started.err
    found = re.fullmatch(r"id=(ex-[0-9a-f]{12})\n", started.out)
    assert found, started.out
    ex = found.group(1)

    listed = cli(capsys, "experiments", "list", name)
    assert listed.code == 0, listed.err
    header, row = listed.out.splitlines()
    assert header.split() == ["ID", "PHASE", "ARMS", "METRIC", "STICKY", "WINNER", "CREATED_AT"]
    assert row.startswith(f"{ex}  Running  v1 50% (control), v2 50%  conversion  header x-user")

    # users through the gateway: each key is served by its arm, and that arm is the one the
    # registry puts the key's outcomes on
    served_routes(yard)
    arm_of: dict[str, int] = {}
    with httpx.Client(base_url=yard.url, timeout=30) as c:
        for i in range(400):
            key = f"user-{i}"
            r = c.post(f"/models/{name}/predict", json={"x": i}, headers={"x-user": key})
            assert r.status_code == 200, r.text
            assert r.json()["version"] == int(r.headers["x-modelyard-version"])
            arm_of[key] = int(r.headers["x-modelyard-version"])
    per_arm = Counter(arm_of.values())
    assert per_arm[1] >= 100 and per_arm[2] >= 100, per_arm

    # v2 converts 40 %, v1 10 %, exactly: outcome k of an arm is 1 when it crosses a multiple
    seen: Counter[int] = Counter()
    outcomes = []
    for key, version in arm_of.items():
        rate, k = (0.4 if version == 2 else 0.1), seen[version]
        seen[version] += 1
        outcomes.append((key, int((k + 1) * rate) - int(k * rate)))
    half = len(outcomes) // 2
    jsonl = tmp_path / "outcomes.jsonl"
    jsonl.write_text("".join(json.dumps({"key": k, "value": v}) + "\n" for k, v in outcomes[:half]))
    fed = cli(capsys, "experiments", "feedback", ex, "--file", str(jsonl))
    assert (fed.code, fed.out) == (0, f"recorded {half} outcomes from {jsonl} in 1 request(s)\n")
    csv = "key,value\n" + "".join(f"{k},{v}\n" for k, v in outcomes[half:])
    piped = shell(env, f"modelyard experiments feedback {ex}", csv.encode())
    assert piped.code == 0, piped.err
    assert piped.out == f"recorded {len(outcomes) - half} outcomes from stdin in 1 request(s)\n"

    res = results(capsys, ex)
    assert {a["version"]: a["n"] for a in res["arms"]} == dict(per_arm)
    assert (res["verdict"], res["winner"]) == ("winner", 2), res
    shown = cli(capsys, "experiments", "show", ex)
    lines = shown.out.splitlines()
    assert lines[0].startswith(f"experiment {ex} of {name}: Running (started ")
    table = lines[lines.index("") + 1 :]
    assert table[0].split() == [
        "VERSION",
        "ROLE",
        "WEIGHT",
        "N",
        "MEAN",
        "CI95",
        "DIFF",
        "DIFF_CI95",
        "P_VALUE",
    ]
    assert table[1].split()[:4] == ["1", "control", "50%", str(per_arm[1])]
    assert table[2].split()[:4] == ["2", "variant", "50%", str(per_arm[2])]
    assert table[2].endswith(" *")  # below alpha
    assert "winner: version 2" in lines and lines[-2].startswith("verdict: winner - version 2")

    stopped = cli(capsys, "experiments", "stop", ex, "--promote", "2", "--reason", "v2 converts")
    assert (stopped.code, stopped.out) == (
        0,
        f"experiment {ex}: Stopped; version 2 is Production\n",
    )
    stages = {v: cli(capsys, "versions", "show", name, v, "--json").json()["stage"] for v in "12"}
    assert stages == {"1": "Archived", "2": "Production"}
    assert cli(capsys, "experiments", "show", ex).out.endswith(
        "stopped: v2 converts; version 2 promoted\n"
    )
    row = cli(capsys, "experiments", "list", name).out.splitlines()[1]
    assert row.startswith(f"{ex}  Stopped") and "  v2  " in row
    late = cli(capsys, "experiments", "feedback", ex, "--file", str(jsonl))
    assert late.code == 1 and late.err.startswith("error: INVALID_STATE: "), late


def test_a_bad_line_is_refused_with_its_number_and_nothing_is_recorded(
    capsys: pytest.CaptureFixture[str], upstreams: list[str], env: dict[str, str], tmp_path: Path
) -> None:
    name = model_on(capsys, upstreams)
    started = cli(
        capsys,
        "experiments",
        "start",
        name,
        "--arm",
        "1",
        "--arm",
        "2",
        "--sticky-cookie",
        "uid",
        "--json",
    )
    assert started.code == 0, started.err
    ex = started.json()["id"]

    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        '{"key": "u1", "value": 1}\n{"key": "u2", "value": 0}\n{"key": "u3", "value": 2}\n'
        '\n{"key": "u5", "value": 1\n{"version": 2, "value": 1}\n'
    )
    refused = cli(capsys, "experiments", "feedback", ex, "--file", str(bad))
    assert (refused.code, refused.out) == (2, "")
    assert refused.err.splitlines() == [
        f"error: {bad}: nothing was sent:",
        "  line 3: a conversion is 0 or 1, got 2",
        "  line 5: not valid JSON: Input data was truncated",
    ]

    # from stdin (`--file -`) in CSV; the bad line comes after more than one batch of good
    # ones, so it is found before the first batch is sent
    rows = "".join(f"{1 + i % 2},{i % 2}\n" for i in range(12_000))
    csv = "version,value\n" + rows + "3,1\n"
    piped = shell(env, f"modelyard experiments feedback {ex} --file -", csv.encode())
    assert piped.code == 2
    assert piped.err.splitlines() == [
        "error: stdin: nothing was sent:",
        "  line 12002: version 3 is not an arm (arms: 1, 2)",
    ]
    assert recorded(capsys, ex) == {1: 0, 2: 0}

    # nothing piped in, stdin a terminal: an error at once, not a wait for typing
    terminal, tty = pty.openpty()
    try:
        argv = [str(BIN / "modelyard"), "experiments", "feedback", ex]
        waited = subprocess.run(
            argv, stdin=tty, env=env, capture_output=True, timeout=30, check=False
        )
    finally:
        os.close(tty)
        os.close(terminal)
    assert waited.returncode == 2
    assert waited.stderr.decode().startswith("error: no outcomes: give --file FILE, or pipe them")
    assert recorded(capsys, ex) == {1: 0, 2: 0}

    missing = cli(capsys, "experiments", "feedback", "ex-000000000000", "--file", str(bad))
    assert missing.code == 1 and missing.err.startswith("error: RESOURCE_DOES_NOT_EXIST: ")


def test_a_large_file_goes_in_batches_the_api_accepts(
    capsys: pytest.CaptureFixture[str], upstreams: list[str], tmp_path: Path
) -> None:
    """25,000 outcomes with long keys are about 6 MB: more than the API takes in one request
    by count (10,000) and by size (1 MiB)."""
    name = model_on(capsys, upstreams)
    started = cli(
        capsys,
        "experiments",
        "start",
        name,
        "--arms",
        "1=30",
        "2=70",
        "--sticky-json-field",
        "user",
        "--metric",
        "reward",
        "--quiet",
    )
    assert started.code == 0, started.err
    ex = started.out.strip()
    pad = "k" * 200
    lines = [json.dumps({"key": f"{i}-{pad}", "value": 1.5}) for i in range(25_000)]
    big = tmp_path / "big.jsonl"
    big.write_text("\n".join(lines) + "\n")
    assert big.stat().st_size > 5_000_000
    fed = cli(capsys, "experiments", "feedback", ex, "--file", str(big), "--json")
    assert fed.code == 0, fed.err
    assert fed.json()["accepted"] == 25_000 and fed.json()["requests"] >= 20
    res = results(capsys, ex)
    assert sum(a["n"] for a in res["arms"]) == 25_000
    assert [a["mean"] for a in res["arms"]] == [1.5, 1.5]
    assert 0.25 < res["arms"][0]["n"] / 25_000 < 0.35  # the 30 % arm


def test_a_batch_refused_after_others_were_recorded_says_where_to_resume(
    capsys: pytest.CaptureFixture[str],
    upstreams: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A registry whose body limit lies between the sizes of the first two batches: the first
    is recorded, the second refused, and the error says which lines were recorded."""
    lines = [json.dumps({"version": 1, "value": 1})] * 10_000
    lines += [json.dumps({"key": f"{i}-{'k' * 240}", "value": 0}) for i in range(2_000)]
    data = ("\n".join(lines) + "\n").encode()
    outcomes = outcome_lines.parse(data).outcomes
    ranges = outcome_lines.batches(outcomes)
    sizes = [len(msgspec.json.encode({"outcomes": outcomes[a:b]})) for a, b in ranges]
    assert ranges[0] == (0, 10_000) and sizes[1] > sizes[0] + 100, sizes
    limit = (sizes[0] + sizes[1]) // 2
    proc = ModelyardProcess(
        "registry", tmp_path / "data", ADMIN, extra_env={"MODELYARD_MAX_BODY_BYTES": str(limit)}
    )
    proc.start()
    try:
        monkeypatch.setenv("MODELYARD_URL", proc.url)
        name = model_on(capsys, upstreams)
        started = cli(
            capsys,
            "experiments",
            "start",
            name,
            "--arms",
            "1",
            "2",
            "--sticky-header",
            "x-user",
            "--quiet",
        )
        assert started.code == 0, started.err
        ex = started.out.strip()
        feed = tmp_path / "outcomes.jsonl"
        feed.write_bytes(data)
        run = cli(capsys, "experiments", "feedback", ex, "--file", str(feed))
        assert (run.code, run.out) == (1, "")
        assert run.err.startswith("error: REQUEST_TOO_LARGE: "), run.err
        note = "; the outcomes of lines 1-10000 were recorded, those from line 10001 on were not"
        assert note in run.err, run.err
        assert recorded(capsys, ex) == {1: 10_000, 2: 0}
    finally:
        proc.stop()
