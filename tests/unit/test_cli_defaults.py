"""The defaults the CLI's help names are the ones the server and the settings use: the help
reads the settings' constants, and the `start` flags of rollouts and experiments name the
defaults of the spec fields they set (a flag not given leaves the field to the server)."""

from __future__ import annotations

import argparse
import re
from typing import Any

import msgspec
import pytest

from modelyard import settings
from modelyard.cli import experiment_commands, rollout_commands
from modelyard.cli.main import build_parser
from registry.experiments.stats import ExperimentSpec
from registry.rollouts.state import RolloutSpec

DEFAULT = re.compile(r"\(default (?P<value>[^);,]+)\)")
#: `experiments start`: each flag's dest and the spec field it sets (SPEC_FLAGS: field -> flag)
EXPERIMENT_FLAGS = {
    flag.removeprefix("--").replace("-", "_"): field
    for field, flag in experiment_commands.SPEC_FLAGS.items()
}


def subparser(*names: str) -> argparse.ArgumentParser:
    parser = build_parser()
    for name in names:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[name]
    return parser


def shown(value: Any) -> str:
    if isinstance(value, list | tuple):
        return " ".join(shown(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def spec_defaults(spec: type[msgspec.Struct]) -> dict[str, str]:
    out = {}
    for field in msgspec.structs.fields(spec):
        if field.default is not msgspec.NODEFAULT:
            out[field.name] = shown(field.default)
        elif field.default_factory is not msgspec.NODEFAULT:
            out[field.name] = shown(field.default_factory())
    return out


@pytest.mark.parametrize(
    ("command", "flags", "spec"),
    [
        ("rollouts", rollout_commands.SPEC_FLAGS, RolloutSpec),
        ("experiments", EXPERIMENT_FLAGS, ExperimentSpec),
    ],
)
def test_start_flags_name_the_spec_defaults(
    command: str, flags: dict[str, str], spec: type[msgspec.Struct]
) -> None:
    defaults = spec_defaults(spec)
    named = 0
    for action in subparser(command, "start")._actions:
        found = DEFAULT.search(action.help or "")
        if found is None or found["value"] in ("none", "the whole answer"):
            continue
        field = flags[action.dest]
        assert found["value"] == defaults[field], f"--{action.dest} names a stale default"
        named += 1
    assert named >= 2  # the test reads at least some defaults


def test_server_flags_name_the_settings_defaults() -> None:
    helps = {a.dest: a.help or "" for a in subparser("serve")._actions}
    assert f"default {settings.DEFAULT_HOST})" in helps["host"]
    assert f"default {settings.DEFAULT_PORT})" in helps["port"]
    assert f"default ./{settings.DEFAULT_DATA_DIR})" in helps["data_dir"]
    assert f"default {settings.DEFAULT_LOG_LEVEL})" in helps["log_level"]
    assert settings.Settings(data_dir="/d").registry_url == settings.DEFAULT_REGISTRY_URL
