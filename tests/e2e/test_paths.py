"""Where modelyard writes: the real CLI (`modelyard serve`, `registry`, `gateway` and the client
commands), started from a temporary working directory with HOME in a temporary folder, with the
default data folder and with a relative `--data-dir`. Every file written is inside the data
folder; nothing appears in the working directory besides it, in HOME, beside them, or at
`/.modelyard` (where a relative SQLite path once went, resolved against the root)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelyard.processes import free_port, terminate, wait_ready

pytestmark = pytest.mark.e2e

BIN = Path(sys.executable).parent
MODELYARD = str(BIN / "modelyard")  # the console script a user runs
READY_S = 30.0
DEPLOY_S = 120.0
STOP_S = 30.0  # `serve` stops its `bentoml serve` first
ROOT_DATA = Path("/.modelyard")
DATA_DIRS = {"default": None, "relative": "state/yard"}  # None: no flag, no MODELYARD_DATA_DIR
ADMIN_LINE = "created the first admin token (shown once, store it now):"
ROWS = {"input_series": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}


def tree(folder: Path) -> dict[str, str]:
    """Every path under `folder` (relative) and what it is: `dir` or `file`."""
    found = {}
    for path in folder.rglob("*"):
        found[str(path.relative_to(folder))] = "dir" if path.is_dir() else "file"
    return found


def snapshot(path: Path) -> object:
    """What `path` holds now (None: it does not exist), to compare after the run."""
    if not path.exists():
        return None
    return {p: (kind, (path / p).stat().st_mtime_ns) for p, kind in tree(path).items()}


@pytest.fixture(autouse=True)
def root_data_untouched() -> Iterator[None]:
    """`/.modelyard` is neither made nor changed (on this machine it should not exist)."""
    before = snapshot(ROOT_DATA)
    yield
    assert snapshot(ROOT_DATA) == before, f"{ROOT_DATA} was written to"


@dataclass
class Place:
    """A temporary working directory and HOME, side by side in `parent`."""

    parent: Path
    home: Path
    logs: Path  # the processes' output: the test's own, not theirs

    def workdir(self, name: str) -> Path:
        path = self.parent / name
        path.mkdir()
        return path

    def env(self, **extra: str) -> dict[str, str]:
        """The outer environment without what would mask the defaults or move writes out of
        HOME (MODELYARD_*, BENTOML_*, XDG_* folders), with HOME here."""
        keep = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("MODELYARD_", "BENTOML_", "XDG_"))
        }
        return {**keep, "HOME": str(self.home), "BENTOML_DO_NOT_TRACK": "true", **extra}


@pytest.fixture
def place(tmp_path: Path) -> Place:
    home, logs = tmp_path / "home", tmp_path / "logs"
    home.mkdir()
    logs.mkdir()
    return Place(tmp_path, home, logs)


class Server:
    """`modelyard ROLE [--data-dir D] --port P`, run by its console script in `cwd`."""

    def __init__(self, place: Place, role: str, cwd: Path, data_dir: str | None, **env: str):
        self.role, self.port = role, free_port()
        self.log_path = place.logs / f"{role}-{self.port}.log"
        argv = [MODELYARD, role, "--port", str(self.port)]
        argv += [] if data_dir is None else ["--data-dir", data_dir]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                argv, cwd=cwd, env=place.env(**env), stdout=log, stderr=subprocess.STDOUT
            )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self) -> None:
        path = "/v2/health/ready" if self.role == "gateway" else "/readyz"
        try:
            wait_ready(self.proc, self.url + path, time.perf_counter() + READY_S)
        except (RuntimeError, TimeoutError) as exc:
            pytest.fail(f"{self.role}: {exc}\n{self.output()[-4000:]}")

    def admin_token(self) -> str:
        """The first admin token, which the server made and printed once."""
        lines = self.output().splitlines()
        for i, line in enumerate(lines):
            if line.endswith(ADMIN_LINE):
                return lines[i + 1].strip()
        pytest.fail(f"no admin token was printed:\n{self.output()[-4000:]}")

    def stop(self) -> None:
        """SIGTERM and a clean stop (uvicorn ends by re-raising the signal), not a SIGKILL."""
        code = terminate(self.proc, STOP_S)
        assert code in (0, -signal.SIGTERM), f"{self.role}: {code}\n{self.output()[-4000:]}"


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for server in started:  # after a failure too (a clean stop is asserted in the test)
        terminate(server.proc, STOP_S)


def cli(place: Place, cwd: Path, server: Server, token: str, *argv: str) -> Any:
    """`modelyard ARGV --json` in `cwd`, as a user runs it; its JSON answer."""
    done = subprocess.run(
        [MODELYARD, *argv, "--json"],
        cwd=cwd,
        env=place.env(MODELYARD_URL=server.url, MODELYARD_TOKEN=token),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"modelyard {' '.join(argv)}: {done.stderr}"
    return json.loads(done.stdout)


def register(place: Place, cwd: Path, server: Server, token: str, bento: Path) -> None:
    """A model and a version uploaded as a Bento archive (artifacts and uploads are written)."""
    cli(place, cwd, server, token, "models", "create", "iris")
    version = cli(place, cwd, server, token, "versions", "create", "iris", "--bento", str(bento))
    assert version["version"] == 1 and version["artifact_uri"].startswith("file://")


def data_of(cwd: Path, data_dir: str | None) -> Path:
    return cwd / (".modelyard" if data_dir is None else data_dir)


def assert_only_inside(cwd: Path, *allowed: Path) -> dict[str, str]:
    """Everything in `cwd` is one of the `allowed` folders, inside one or a parent of one;
    the tree of the first (the data folder) is returned."""

    def fits(path: Path) -> bool:
        return any(path == a or a in path.parents or path in a.parents for a in allowed)

    outside = {p: kind for p, kind in tree(cwd).items() if not fits(cwd / p)}
    assert outside == {}, f"written outside {[str(a) for a in allowed]}"
    return tree(allowed[0])


def assert_store_files(data: Path, files: dict[str, str], database: str = "modelyard.db") -> None:
    """The registry's own files are there: database and lead file (in the data folder unless
    `database` names a file elsewhere), signing key, uploads, artifacts."""
    assert (data / database).is_file() and (data / f"{database}.lead").is_file(), files
    assert files.get("signing.key") == "file", files
    assert (data / "signing.key").stat().st_mode & 0o777 == 0o600
    assert files.get("uploads") == "dir", files
    assert [p for p in files if p.startswith("artifacts/iris/") and p.endswith(".bento")], files


def wait_deployed(c: httpx.Client) -> dict[str, Any]:
    deadline = time.monotonic() + DEPLOY_S
    last: Any = None
    while time.monotonic() < deadline:
        r = c.get("/models/iris/versions/1/deployment")
        last = r.json()
        if r.status_code == 200 and last["status"] in ("ready", "failed"):
            assert last["status"] == "ready", last
            return dict(last)
        time.sleep(0.1)
    pytest.fail(f"version 1 not ready after {DEPLOY_S} s: {last}")


def predict_through(gateway_url: str) -> dict[str, Any]:
    """One prediction through the gateway, once it follows the new route."""
    deadline = time.monotonic() + READY_S
    while True:
        r = httpx.post(f"{gateway_url}/models/iris/classify", json=ROWS, timeout=30)
        if r.status_code == 200 or time.monotonic() > deadline:
            assert r.status_code == 200, r.text
            return dict(r.json())
        time.sleep(0.1)


@pytest.mark.parametrize("mode", DATA_DIRS)
def test_serve_writes_only_in_its_data_folder(
    mode: str, place: Place, servers: list[Server], iris_bentos: tuple[Path, Path]
) -> None:
    data_dir = DATA_DIRS[mode]
    cwd = place.workdir("checkout")
    data = data_of(cwd, data_dir)
    serve = Server(place, "serve", cwd, data_dir)
    servers.append(serve)
    serve.wait_ready()
    token = serve.admin_token()
    register(place, cwd, serve, token, iris_bentos[0])
    cli(place, cwd, serve, token, "stage", "iris", "1", "Production")
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=f"{serve.url}/api/v1", headers=headers, timeout=30) as c:
        wait_deployed(c)  # the local deployer imported the archive and runs `bentoml serve`
    assert predict_through(serve.url)["predictions"] == [0, 2]
    home = data / "servers" / "iris" / "1" / "home"  # its BENTOML_HOME, in the data folder
    assert (home / "bentos" / "iris-classifier" / "v1").is_dir(), tree(data)
    assert (data / "servers" / "iris" / "1" / "server.log").is_file()
    assert_only_inside(cwd, data)  # while `bentoml serve` runs, and after the stop
    serve.stop()

    assert_store_files(data, assert_only_inside(cwd, data))
    assert tree(place.home) == {}, "written to HOME"
    assert {p.name for p in place.parent.iterdir()} == {"checkout", "home", "logs"}


@pytest.mark.parametrize("mode", DATA_DIRS)
def test_registry_and_gateway_write_only_in_their_data_folders(
    mode: str, place: Place, servers: list[Server], iris_bentos: tuple[Path, Path]
) -> None:
    data_dir = DATA_DIRS[mode]
    registry_cwd, gateway_cwd = place.workdir("registry"), place.workdir("gateway")
    data = data_of(registry_cwd, data_dir)
    registry = Server(place, "registry", registry_cwd, data_dir)
    servers.append(registry)
    registry.wait_ready()
    token = registry.admin_token()
    register(place, registry_cwd, registry, token, iris_bentos[1])
    deployer = cli(
        place, registry_cwd, registry, token, "tokens", "create", "gw", "--role", "deployer"
    )
    gateway = Server(
        place,
        "gateway",
        gateway_cwd,
        data_dir,
        MODELYARD_REGISTRY_URL=registry.url,
        MODELYARD_REGISTRY_TOKEN=deployer["token"],
        MODELYARD_GATEWAY_REPORT_S="0.2",
    )
    servers.append(gateway)
    gateway.wait_ready()
    # the gateway follows the registry's routes: it knows iris, which has no served version
    answer = httpx.post(f"{gateway.url}/models/iris/classify", json=ROWS, timeout=30)
    assert answer.status_code == 503, answer.text
    assert answer.json()["error_code"] == "NO_HEALTHY_UPSTREAM"
    gateway.stop()
    registry.stop()

    assert_store_files(data, assert_only_inside(registry_cwd, data))
    # the gateway keeps one file: its last route table (served after a restart while the
    # registry is down), in its own data folder
    gateway_data = data_of(gateway_cwd, data_dir)
    assert assert_only_inside(gateway_cwd, gateway_data) == {"gateway-routes.json": "file"}
    saved = json.loads((gateway_data / "gateway-routes.json").read_text())
    assert "iris" in saved["models"], saved
    assert tree(place.home) == {}, "written to HOME"
    assert {p.name for p in place.parent.iterdir()} == {"registry", "gateway", "home", "logs"}


def test_a_relative_sqlite_url_is_a_file_under_the_working_directory(
    place: Place, servers: list[Server], iris_bentos: tuple[Path, Path]
) -> None:
    """`MODELYARD_DATABASE_URL=sqlite:///meta/yard.db`: SQLAlchemy's meaning, `meta/yard.db`
    in the working directory (and its lead file beside it); the rest stays in the data folder."""
    cwd = place.workdir("checkout")
    url = "sqlite:///meta/yard.db"
    registry = Server(place, "registry", cwd, None, MODELYARD_DATABASE_URL=url)
    servers.append(registry)
    registry.wait_ready()
    register(place, cwd, registry, registry.admin_token(), iris_bentos[1])
    registry.stop()

    data = cwd / ".modelyard"
    files = assert_only_inside(cwd, data, cwd / "meta")
    assert_store_files(data, files, database="../meta/yard.db")
    assert "modelyard.db" not in files
    assert tree(place.home) == {}, "written to HOME"
    assert {p.name for p in place.parent.iterdir()} == {"checkout", "home", "logs"}
