"""The CLI's help is a public surface: pinned here, word for word, so that a change to it is a
deliberate one. After changing it on purpose, rewrite the snapshots with
`MODELYARD_UPDATE_SNAPSHOTS=1 .venv/bin/python -m pytest tests/unit/test_cli_help.py` and
review the diff of tests/unit/cli_help/."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from modelyard.cli.main import main

SNAPSHOTS = Path(__file__).parent / "cli_help"
COMMANDS = [
    [],
    ["experiments"],
    ["experiments", "start"],
    ["experiments", "list"],
    ["experiments", "show"],
    ["experiments", "feedback"],
    ["experiments", "stop"],
    ["serve-version"],
]


def help_of(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exited:
        main([*argv, "--help"])
    assert exited.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("argv", COMMANDS, ids=lambda argv: " ".join(argv) or "modelyard")
def test_help_is_as_pinned(
    argv: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "100")  # argparse wraps to the terminal's width
    text = help_of(argv, capsys)
    snapshot = SNAPSHOTS / ("-".join(["modelyard", *argv]) + ".txt")
    if os.environ.get("MODELYARD_UPDATE_SNAPSHOTS"):
        snapshot.write_text(text)
    assert snapshot.exists(), f"no snapshot {snapshot.name}: see this module's docstring"
    assert text == snapshot.read_text(), f"`modelyard {' '.join(argv)} --help` changed"
