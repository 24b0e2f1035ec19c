"""The README is tested: every copyable shell block of its user sections runs, as written, against
a real `modelyard serve`, so a README that drifts from the code fails CI.

The blocks (```bash fences) run in document order in one bash session (`set -euo pipefail`), so
what one block exports or captures the next one uses, exactly as a user pasting them in order
would. The working directory is a fresh folder that holds links to the clone's top-level entries
(`.venv`, `Makefile`, `examples/`, ...), so the blocks' relative paths work and whatever they write
lands in that folder, not in the clone. Only two things are substituted: the port (`127.0.0.1:8000`
becomes the test server's free port) and the admin token (`myd_...`, which a user pastes from
`make run`'s output). A block is not run only when the line before its fence says why:
`<!-- readme-test: skip: REASON -->`; the reasons are pinned below, so a new skip is a decision,
never an accident. `curl` runs with `--fail-with-body`, so a block whose request is refused fails
(a user would see the error body; a script would not stop). After the run, what the blocks were
meant to achieve is checked through the API: the rollouts ended as the README says, and so on.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from modelyard.processes import ModelyardProcess

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
SKIP = re.compile(r"<!--\s*readme-test:\s*skip:\s*(.+?)\s*-->")
DEFAULT_ORIGIN = "127.0.0.1:8000"
TOKEN_PLACEHOLDER = "myd_..."
#: The README sections whose blocks a user copies while learning the product: every bash block in
#: them runs, or says why not.
USER_SECTIONS = (
    "Quickstart",
    "The CLI",
    "A model served by modelyard",
    "Traffic through the gateway",
    "Rollouts",
    "A/B experiments",
    "MLflow clients",
)
#: The only blocks allowed not to run, by their first line, and why.
ALLOWED_SKIPS = {
    "make run": "the test starts `modelyard serve` itself, on a free port",
}
BLOCK_TIMEOUT_S = 600


@dataclass(frozen=True)
class Block:
    section: str
    line: int  # 1-based line of the opening fence
    code: str
    skip: str | None

    @property
    def first_line(self) -> str:
        return self.code.strip().splitlines()[0].split("  #")[0].strip()


def read_blocks(text: str) -> list[Block]:
    """Every ```bash block with its `## ` section and its skip reason, if any."""
    blocks: list[Block] = []
    section = ""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("## "):
            section = line[3:].strip()
        if line.strip() == "```bash":
            start = i
            body: list[str] = []
            i += 1
            while lines[i].strip() != "```":
                body.append(lines[i])
                i += 1
            before = next((lines[j] for j in range(start - 1, -1, -1) if lines[j].strip()), "")
            found = SKIP.search(before)
            blocks.append(Block(section, start + 1, "\n".join(body), found and found.group(1)))
        i += 1
    return blocks


def user_blocks() -> list[Block]:
    return [b for b in read_blocks(README.read_text()) if b.section in USER_SECTIONS]


def test_every_user_section_has_blocks_and_every_skip_is_pinned() -> None:
    blocks = user_blocks()
    sections = {b.section for b in blocks}
    assert sections == set(USER_SECTIONS), (
        f"sections without a bash block: {set(USER_SECTIONS) - sections}"
    )
    skipped = {b.first_line: b.skip for b in blocks if b.skip}
    assert set(skipped) == set(ALLOWED_SKIPS), f"unexpected skips: {skipped}"


def script_of(blocks: list[Block], port: int, token: str) -> str:
    """One bash script: each block behind a marker line, so a failure names its block."""
    parts = [
        "set -euo pipefail",
        'curl() { command curl --fail-with-body "$@"; }',
        # a block's background loop ends with the script, which keeps its own exit status
        "trap 'status=$?; jobs -p | xargs -r kill 2> /dev/null || true; exit $status' EXIT",
    ]
    for n, block in enumerate(blocks):
        code = block.code.replace(DEFAULT_ORIGIN, f"127.0.0.1:{port}").replace(
            TOKEN_PLACEHOLDER, token
        )
        parts.append(f"echo '::block {n} (README line {block.line}, {block.section})::'")
        parts.append(code)
    parts.append("echo '::done::'")
    return "\n".join(parts) + "\n"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A user's folder: links to the clone's top-level entries, nothing else."""
    cwd = tmp_path_factory.mktemp("readme-cwd")
    (ROOT / ".cache").mkdir(exist_ok=True)
    for entry in ROOT.iterdir():
        if entry.name in (".git", ".modelyard", ".pytest_cache", ".mypy_cache", ".ruff_cache"):
            continue
        (cwd / entry.name).symlink_to(entry)
    return cwd


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModelyardProcess]:
    data = tmp_path_factory.mktemp("readme-data")
    proc = ModelyardProcess("serve", data, "myd_" + secrets.token_hex(32))
    try:
        proc.start()
        yield proc
    finally:
        proc.stop()


def test_the_readme_blocks_run_as_written(
    workdir: Path, server: ModelyardProcess, tmp_path: Path
) -> None:
    blocks = [b for b in user_blocks() if not b.skip]
    script = script_of(blocks, server.port, server.admin_token)
    (tmp_path / "readme.sh").write_text(script)
    home = tmp_path / "home"
    home.mkdir()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MODELYARD_", "MLFLOW_", "PYTEST_"))
    }
    env["HOME"] = str(home)
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    with out.open("w") as stdout, err.open("w") as stderr:
        bash = subprocess.Popen(
            ["bash", str(tmp_path / "readme.sh")],
            cwd=workdir,
            env=env,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,  # its own process group: whatever it started goes with it
        )
        try:
            code = bash.wait(timeout=BLOCK_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            code = -1
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(bash.pid, signal.SIGKILL)  # background loops a failed block left
            bash.wait()
    done = subprocess.CompletedProcess(bash.args, code, out.read_text(), err.read_text())
    ran = re.findall(r"::block (\d+) \(([^)]*)\)::", done.stdout)
    print("README blocks run:")
    for n, where in ran:
        print(f"  {n}: {where}: {blocks[int(n)].first_line}")
    failed = f"{ran[-1][1] if ran else 'before the first block'}"
    assert done.returncode == 0 and "::done::" in done.stdout, (
        f"README block failed at {failed} (exit {done.returncode})\n"
        f"--- stdout (tail)\n{done.stdout[-3000:]}\n--- stderr (tail)\n{done.stderr[-3000:]}\n"
        f"--- server log (tail)\n{server.output()[-2000:]}"
    )
    assert len(ran) == len(blocks)
    shutil.rmtree(home, ignore_errors=True)
    check_outcomes(server)


def check_outcomes(server: ModelyardProcess) -> None:
    """What the README says its blocks do, read back from the registry."""
    headers = {"Authorization": f"Bearer {server.admin_token}"}
    with httpx.Client(base_url=f"{server.url}/api/v1", headers=headers, timeout=10) as api:
        fraud = api.get("/models/fraud").json()
        assert fraud["aliases"] == {"champion": 1} and fraud["tags"] == {"team": "risk"}
        rollouts = api.get("/models/iris/rollouts").json()
        ended = sorted((r["spec"]["candidate"], r["spec"]["mode"], r["phase"]) for r in rollouts)
        assert ended == [
            (2, "canary", "Succeeded"),
            (2, "shadow", "Succeeded"),
            (3, "canary", "RolledBack"),
        ], ended
        production = api.get("/models/iris/versions", params={"stage": "Production"}).json()
        assert [v["version"] for v in production["items"]] == [2]
        experiments = api.get("/models/iris/experiments").json()
        assert [e["phase"] for e in experiments] == ["Stopped"], experiments
