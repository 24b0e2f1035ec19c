"""The `modelyard` client commands against a real registry process, called in-process."""

from __future__ import annotations

import json
import re
import secrets
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import msgspec
import pytest

from modelyard.cli.main import main
from modelyard.processes import ModelyardProcess, free_port
from registry.rollouts.state import RolloutSpec

pytestmark = pytest.mark.e2e

ADMIN = "myd_test_" + secrets.token_urlsafe(32)
DIGEST = "sha256:" + "ab" * 32


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


Cli = Callable[..., Run]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModelyardProcess]:
    proc = ModelyardProcess("registry", tmp_path_factory.mktemp("cli") / "data", admin_token=ADMIN)
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def cli(
    server: ModelyardProcess, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Cli:
    """`modelyard ARGS...` with URL and admin token from the environment; never shows the token."""
    monkeypatch.setenv("MODELYARD_URL", server.url)
    monkeypatch.setenv("MODELYARD_TOKEN", ADMIN)
    capsys.readouterr()

    def run(*argv: str) -> Run:
        code = main(list(argv))
        out, err = capsys.readouterr()
        assert ADMIN not in out + err
        return Run(code, out, err)

    return run


def unique(prefix: str = "m") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def new_model(cli: Cli, versions: int = 0) -> str:
    name = unique()
    assert cli("models", "create", name).code == 0
    for _ in range(versions):
        created = cli(
            "versions",
            "create",
            name,
            "--artifact-uri",
            "s3://b/m.bento",
            "--digest",
            DIGEST,
            "--size",
            "7",
        )
        assert created.code == 0, created.err
    return name


def failed(run: Run, code: str) -> None:
    """Exit 1 with `error: CODE: message` on stderr and nothing on stdout."""
    assert run.code == 1, run
    assert run.err.startswith(f"error: {code}: "), run.err
    assert run.out == ""


def column(table: str, header: str, row: int) -> str:
    """The word of a table row under a header, found by position (so it checks alignment)."""
    lines = table.splitlines()
    start = lines[0].index(header)
    return lines[row][start:].split(" ", 1)[0]


# --- models -----------------------------------------------------------------------------


def test_models_create_show_and_list(cli: Cli) -> None:
    name = unique()
    created = cli(
        "models", "create", name, "--description", "iris", "--tag", "team=ml", "--tag", "task=cls"
    )
    assert created.code == 0, created.err
    assert f"name:           {name}\n" in created.out
    assert "tags:           team=ml, task=cls\n" in created.out

    shown = cli("models", "show", name, "--json").json()
    assert (shown["name"], shown["description"]) == (name, "iris")
    assert shown["tags"] == {"team": "ml", "task": "cls"}
    assert shown["aliases"] == {}

    listed = cli("models", "list", "--prefix", name)
    assert listed.code == 0
    assert listed.out.splitlines()[0].split() == [
        "NAME",
        "LATEST_VERSION",
        "ALIASES",
        "TAGS",
        "OWNER",
        "UPDATED_AT",
    ]
    assert column(listed.out, "NAME", 1) == name
    assert column(listed.out, "OWNER", 1) == "bootstrap-admin"
    assert len(listed.out.splitlines()) == 2

    page = cli("models", "list", "--prefix", name, "--json").json()
    assert [m["name"] for m in page["items"]] == [name]
    assert page["next_cursor"] is None


def test_models_list_filters_by_tag(cli: Cli) -> None:
    prefix = unique("tagged")
    cli("models", "create", f"{prefix}-a", "--tag", "team=ml")
    cli("models", "create", f"{prefix}-b", "--tag", "team=ops")
    page = cli("models", "list", "--prefix", prefix, "--tag", "team=ops", "--json").json()
    assert [m["name"] for m in page["items"]] == [f"{prefix}-b"]


def test_models_list_pages_and_all_follows_the_cursor(cli: Cli) -> None:
    prefix = unique("paged")
    names = [f"{prefix}-{c}" for c in "abc"]
    for name in names:
        assert cli("models", "create", name).code == 0

    first = cli("models", "list", "--prefix", prefix, "--limit", "2", "--json").json()
    assert [m["name"] for m in first["items"]] == names[:2]
    assert first["next_cursor"]
    text = cli("models", "list", "--prefix", prefix, "--limit", "2").out
    assert text.rstrip().endswith("(more results: use --all or a larger --limit)")

    every = cli("models", "list", "--prefix", prefix, "--limit", "2", "--all", "--json").json()
    assert [m["name"] for m in every["items"]] == names
    assert every["next_cursor"] is None


# --- versions and stages ----------------------------------------------------------------


def test_versions_create_list_and_show(cli: Cli) -> None:
    name = new_model(cli)
    first = cli(
        "versions",
        "create",
        name,
        "--artifact-uri",
        "s3://bucket/iris.bento",
        "--digest",
        DIGEST,
        "--size",
        "123",
        "--metric",
        "acc=0.97",
        "--param",
        "lr=0.1",
        "--tag",
        "data=v2",
        "--json",
    )
    assert first.code == 0, first.err
    body = first.json()
    assert (body["version"], body["stage"], body["size_bytes"], body["digest"]) == (
        1,
        "None",
        123,
        DIGEST,
    )
    assert (body["metrics"], body["params"], body["tags"]) == (
        {"acc": 0.97},
        {"lr": "0.1"},
        {"data": "v2"},
    )

    second = cli("versions", "create", name, "--endpoint", "http://iris:3000", "--run-id", "run-7")
    assert second.code == 0, second.err
    assert "\nversion:         2\n" in second.out
    assert "\nrun_id:          run-7\n" in second.out

    listed = cli("versions", "list", name)
    assert [column(listed.out, "VERSION", row) for row in (1, 2)] == ["2", "1"]
    assert column(listed.out, "ENDPOINT", 1) == "http://iris:3000"
    assert column(listed.out, "ARTIFACT_URI", 2) == "s3://bucket/iris.bento"
    assert [v["version"] for v in cli("versions", "list", name, "--json").json()["items"]] == [2, 1]

    shown = cli("versions", "show", name, "1")
    assert "artifact_uri:    s3://bucket/iris.bento\n" in shown.out
    assert "metrics:         acc=0.97\n" in shown.out


def test_stage_with_archive_existing_archives_the_old_production(cli: Cli) -> None:
    name = new_model(cli, versions=2)
    promoted = cli("stage", name, "1", "production", "--json")
    assert promoted.code == 0, promoted.err
    assert promoted.json()["stage"] == "Production"

    failed(cli("stage", name, "2", "Production"), "STAGE_OCCUPIED")

    moved = cli(
        "stage", name, "2", "PRODUCTION", "--archive-existing", "--reason", "better", "--json"
    )
    assert moved.json()["stage"] == "Production"
    assert cli("versions", "show", name, "1", "--json").json()["stage"] == "Archived"
    archived = cli("versions", "list", name, "--stage", "archived", "--json").json()
    assert [v["version"] for v in archived["items"]] == [1]
    in_prod = cli("models", "list", "--prefix", name, "--stage", "Production", "--json").json()
    assert [m["name"] for m in in_prod["items"]] == [name]


# --- aliases ----------------------------------------------------------------------------


def test_alias_set_show_at_and_delete(cli: Cli) -> None:
    name = new_model(cli, versions=2)
    assert (
        cli("alias", "set", name, "champion", "1", "--reason", "first").out
        == f"{name}@champion -> version 1\n"
    )
    between = datetime.now(UTC).isoformat()
    time.sleep(0.01)
    assert cli("alias", "set", name, "champion", "2").code == 0

    now = cli("alias", "show", name, "champion", "--json").json()
    assert (now["version"], now["aliases"]) == (2, ["champion"])
    assert cli("models", "show", name, "--json").json()["aliases"] == {"champion": 2}
    assert "aliases:        champion=2\n" in cli("models", "show", name).out

    then = cli("alias", "show", name, "champion", "--at", between)
    assert then.code == 0, then.err
    assert then.out.endswith("-> version 1\n")
    assert cli("alias", "show", name, "champion", "--at", between, "--json").json()["version"] == 1
    before = cli("alias", "show", name, "champion", "--at", "2000-01-01T00:00:00Z")
    assert before.out.endswith(" was not set\n")

    deleted = cli("alias", "delete", name, "champion")
    assert (deleted.code, deleted.out) == (0, f"deleted alias champion of {name}\n")
    failed(cli("alias", "show", name, "champion"), "RESOURCE_DOES_NOT_EXIST")


# --- audit ------------------------------------------------------------------------------


def test_audit_lists_events_and_verifies_the_chain(cli: Cli, server: ModelyardProcess) -> None:
    name = new_model(cli, versions=1)
    cli("stage", name, "1", "Staging", "--reason", "qa-run")
    cli("alias", "set", name, "candidate", "1")

    events = cli("audit", name, "--json").json()["items"]
    actions = ["model.create", "version.create", "version.stage", "alias.set"]
    assert [e["action"] for e in events] == actions
    assert [e["seq"] for e in events] == [1, 2, 3, 4]
    table = cli("audit", name).out
    assert column(table, "ACTION", 3) == "version.stage"
    assert column(table, "REASON", 3) == "qa-run"
    assert {
        e["version"] for e in cli("audit", name, "--version", "1", "--json").json()["items"]
    } == {1}

    one = cli("audit", name, "--limit", "1", "--json").json()
    assert (len(one["items"]), bool(one["next_cursor"])) == (1, True)
    every = cli("audit", name, "--limit", "1", "--all", "--json").json()["items"]
    assert [e["seq"] for e in every] == [1, 2, 3, 4]

    verified = cli("audit", name, "--verify")
    assert verified.code == 0, verified.out
    assert "ok:        yes\n" in verified.out
    report = cli("audit", name, "--verify", "--json").json()
    assert (report["ok"], report["events"], report["head_seq"]) == (True, 4, 4)

    with closing(sqlite3.connect(server.data_dir / "modelyard.db")) as db, db:
        db.execute(
            "UPDATE audit_events SET reason = 'edited' WHERE scope = ? AND seq = 3",
            (f"model:{name}",),
        )
    broken = cli("audit", name, "--verify", "--json")
    assert broken.code == 1
    assert (broken.json()["ok"], broken.json()["broken_at"]) == (False, 3)


# --- tokens and permissions -------------------------------------------------------------


def test_tokens_create_list_revoke_and_roles(cli: Cli) -> None:
    token_name = unique("reader")
    issued = cli("tokens", "create", token_name, "--role", "READER", "--json").json()
    secret, token_id = issued["token"], issued["id"]
    assert issued["role"] == "reader"

    listed = cli("tokens", "list")
    assert token_name in listed.out
    assert secret[:10] in listed.out
    assert secret not in listed.out
    mine = [t for t in cli("tokens", "list", "--json").json()["items"] if t["id"] == token_id]
    assert [(t["name"], t["revoked_at"]) for t in mine] == [(token_name, None)]

    assert cli("models", "list", "--limit", "1", "--token", secret).code == 0
    failed(cli("models", "create", unique(), "--token", secret), "PERMISSION_DENIED")
    failed(cli("tokens", "list", "--token", secret), "PERMISSION_DENIED")

    revoked = cli("tokens", "revoke", str(token_id))
    assert revoked.out == f"revoked token {token_id} ({token_name})\n"
    mine = [t for t in cli("tokens", "list", "--json").json()["items"] if t["id"] == token_id]
    assert mine[0]["revoked_at"] is not None
    failed(cli("models", "list", "--token", secret), "UNAUTHENTICATED")


# --- errors and connection options ------------------------------------------------------


def test_missing_model_is_exit_1(cli: Cli) -> None:
    missing = unique("missing")
    run = cli("models", "show", missing)
    failed(run, "RESOURCE_DOES_NOT_EXIST")
    assert missing in run.err


def test_invalid_input_names_the_field(cli: Cli) -> None:
    name = new_model(cli)
    run = cli("versions", "create", name, "--artifact-uri", "s3://b/m.bento")
    failed(run, "INVALID_PARAMETER_VALUE")
    assert run.err.splitlines()[0].endswith("(field: digest)")


def test_missing_token_is_unauthenticated_with_a_hint(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MODELYARD_TOKEN")
    run = cli("models", "list")
    failed(run, "UNAUTHENTICATED")
    assert "MODELYARD_TOKEN" in run.err


def test_url_and_token_options_override_the_environment(
    cli: Cli, server: ModelyardProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELYARD_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("MODELYARD_TOKEN", "not-a-real-token-0123456789")
    run = cli(
        "models", "list", "--limit", "1", "--url", server.url + "/", "--token", ADMIN, "--json"
    )
    assert run.code == 0, run.err
    assert "items" in run.json()


def test_unreachable_server_is_exit_2_and_names_the_url(cli: Cli) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    run = cli("models", "list", "--url", url)
    assert run.code == 2
    assert run.err.startswith(f"error: cannot reach the registry at {url}: ")
    assert run.out == ""


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        (["stage", "m", "1", "Prod"], "'Prod' is not one of None, Staging, Production, Archived"),
        (["models", "list", "--tag", "team"], "expected KEY=VALUE"),
        (["versions", "create", "m", "--metric", "acc=high"], "needs a finite number"),
        (["alias", "show", "m", "a", "--at", "2024-01-01T00:00:00"], "RFC 3339 time with offset"),
        (["tokens", "create", "bot", "--role", "owner"], "invalid choice: 'owner'"),
        (["models", "list", "--limit", "0"], "expected a positive integer"),
        (["models"], "required: COMMAND"),
    ],
)
def test_usage_errors_are_exit_2(
    argv: list[str], complaint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert complaint in capsys.readouterr().err


@contextmanager
def feeding(
    server: ModelyardProcess, name: str, arms: list[tuple[str, int, dict[str, int]]]
) -> Iterator[None]:
    """Healthy traffic windows of `arms` (variant, version, extra counts), every 0.1 s, as a
    gateway would report them, until the block ends."""
    stop = threading.Event()
    window = {
        "model": name,
        "requests": 100,
        "errors": 0,
        "latencies_ms": [20.0 + (i % 7) for i in range(100)],
    }
    windows = [
        {**window, "variant": variant, "version": version, **extra}
        for variant, version, extra in arms
    ]

    def gateway() -> None:
        with httpx.Client(headers={"Authorization": f"Bearer {ADMIN}"}) as c:
            while not stop.wait(0.1):
                r = c.post(
                    f"{server.url}/api/v1/windows", json={"source": "gw", "windows": windows}
                )
                assert r.status_code == 204, r.text

    feeder = threading.Thread(target=gateway, daemon=True)
    feeder.start()
    try:
        yield
    finally:
        stop.set()
        feeder.join()


def test_a_rollout_from_the_cli(cli: Cli, server: ModelyardProcess) -> None:
    """start, watch every verdict until the end, show the evidence; a finished rollout
    refuses to pause with a clear error."""
    name = new_model(cli, versions=2)
    assert cli("stage", name, "1", "production").code == 0
    started = cli(
        "rollouts",
        "start",
        name,
        "--candidate",
        "2",
        "--steps",
        "10",
        "50",
        "100",
        "--interval",
        "0.3",
        "--min-sample",
        "50",
        "--json",
    )
    assert started.code == 0, started.err
    rollout_id = started.json()["id"]
    with feeding(server, name, [("stable", 1, {}), ("canary", 2, {})]):
        watched = cli("rollouts", "watch", rollout_id, "--poll", "0.2", "--timeout", "60")
    assert watched.code == 0, watched.err
    assert "[Progressing 10%] pass" in watched.out and "Succeeded" in watched.out
    shown = cli("rollouts", "show", rollout_id)
    assert shown.code == 0 and f"rollout {rollout_id} of {name}: Succeeded" in shown.out
    for check in ("errors: pass", "latency: pass", "threshold="):
        assert check in shown.out, shown.out
    listed = cli("rollouts", "list", name)
    assert rollout_id in listed.out
    late = cli("rollouts", "pause", rollout_id)
    assert late.code == 1 and "Succeeded" in late.err


#: For every field of a rollout spec: the flags of `rollouts start` that set it and the value
#: the server then stores, unlike the field's default. Checked against the Struct's fields, so
#: a new field without a flag (and an entry here) fails.
FLAG_EXAMPLES: dict[str, tuple[list[str], Any]] = {
    "candidate": (["--candidate", "2"], 2),
    "steps": (["--steps", "20", "60", "100"], [20.0, 60.0, 100.0]),
    "interval_s": (["--interval", "30"], 30.0),
    "min_sample_per_arm": (["--min-sample", "250"], 250),
    "max_error_rate": (["--max-error-rate", "0.02"], 0.02),
    "max_p99_ms": (["--max-p99-ms", "150"], 150.0),
    "alpha": (["--alpha", "0.05"], 0.05),
    "latency_effect_floor": (["--latency-effect-floor", "0.2"], 0.2),
    "latency_floor_ms": (["--latency-floor-ms", "5"], 5.0),
    "max_inconclusive": (["--max-inconclusive", "20"], 20),
    "sticky": (["--sticky-header", "x-user"], {"header": "x-user"}),
    "mode": (["--shadow"], "shadow"),
    "shadow_percent": (["--shadow-percent", "40"], 40.0),
    "min_agreement": (["--min-agreement", "0.9"], 0.9),
    "compare_field": (["--compare-field", "result.label"], "result.label"),
}


def test_rollouts_start_has_a_flag_for_every_spec_field(cli: Cli) -> None:
    fields = msgspec.structs.fields(RolloutSpec)
    assert set(FLAG_EXAMPLES) == {f.name for f in fields}, "a spec field without a flag"
    for f in fields:
        default = f.default_factory() if f.default_factory is not msgspec.NODEFAULT else f.default
        if default is not msgspec.NODEFAULT:
            assert msgspec.to_builtins(default) != FLAG_EXAMPLES[f.name][1], f.name
    name = new_model(cli, versions=2)
    assert cli("stage", name, "1", "production").code == 0
    argv = [arg for flags, _ in FLAG_EXAMPLES.values() for arg in flags]
    started = cli("rollouts", "start", name, *argv, "--quiet")
    assert started.code == 0, started.err
    rollout_id = started.out.strip()
    assert started.out == f"{rollout_id}\n" and rollout_id.startswith("ro-")  # `RO=$(...)`
    spec = cli("rollouts", "show", rollout_id, "--json").json()["rollout"]["spec"]
    assert {k: spec[k] for k in FLAG_EXAMPLES} == {k: v for k, (_, v) in FLAG_EXAMPLES.items()}
    assert cli("rollouts", "abort", rollout_id).code == 0
    for flag, key in (("--sticky-cookie", "cookie"), ("--sticky-json-field", "json_field")):
        other = new_model(cli, versions=2)
        assert cli("stage", other, "1", "production").code == 0
        made = cli("rollouts", "start", other, "--candidate", "2", flag, "user", "--json")
        assert made.code == 0, made.err
        assert made.json()["spec"]["sticky"] == {key: "user"}
        assert cli("rollouts", "abort", made.json()["id"]).code == 0


def test_rollouts_start_flags_are_checked(cli: Cli) -> None:
    name = new_model(cli, versions=2)
    assert cli("stage", name, "1", "production").code == 0
    both = cli("rollouts", "start", name, "--candidate", "2", "--quiet", "--json")
    assert both.code == 2 and "--quiet and --json" in both.err
    canary = cli("rollouts", "start", name, "--candidate", "2", "--compare-field", "predictions")
    failed(canary, "INVALID_PARAMETER_VALUE")
    assert "compare_field is for shadow rollouts (field: compare_field)" in canary.err
    out_of_range = cli("rollouts", "start", name, "--candidate", "2", "--alpha", "0.7")
    assert out_of_range.code == 1 and "alpha" in out_of_range.err
    assert cli("rollouts", "list", name, "--json").json() == []


def test_a_shadow_rollout_shows_its_agreement(cli: Cli, server: ModelyardProcess) -> None:
    """watch and show print how often the shadow's answers agreed, with the counts."""
    name = new_model(cli, versions=2)
    assert cli("stage", name, "1", "production").code == 0
    started = cli(
        "rollouts",
        "start",
        name,
        "--candidate",
        "2",
        "--shadow",
        "--compare-field",
        "predictions",
        "--min-agreement",
        "0.9",
        "--interval",
        "0.3",
        "--min-sample",
        "50",
        "--quiet",
    )
    assert started.code == 0, started.err
    rollout_id = started.out.strip()
    before = cli("rollouts", "show", rollout_id)
    assert "compares the field 'predictions'; min agreement 90.0%" in before.out, before.out
    with feeding(server, name, [("stable", 1, {}), ("shadow", 2, {"compared": 100, "agreed": 97})]):
        watched = cli("rollouts", "watch", rollout_id, "--poll", "0.2", "--timeout", "60")
    assert watched.code == 0, watched.err
    found = re.search(
        r"\[Progressing 100%\] pass: .* \| agreement 97\.0% \((\d+)/(\d+)\)\n", watched.out
    )
    assert found, watched.out
    agreed, compared = int(found.group(1)), int(found.group(2))
    assert compared >= 100 and agreed == compared * 97 // 100
    shown = cli("rollouts", "show", rollout_id)
    assert f"rollout {rollout_id} of {name}: Succeeded" in shown.out
    assert f"agreement: 97.0% ({agreed} of {compared} compared answers agreed, look " in shown.out
    assert column(shown.out.split("\n\n")[1], "AGREEMENT", 1) == "97.0%"
    look = cli("rollouts", "show", rollout_id, "--json").json()["looks"][-1]
    assert (look["agreed"], look["compared"]) == (agreed, compared)
