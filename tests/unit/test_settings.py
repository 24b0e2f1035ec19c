from __future__ import annotations

import pytest

from modelyard.settings import SettingsError, load_settings


def test_defaults_are_the_embedded_setup() -> None:
    s = load_settings({})
    assert (s.host, s.port) == ("127.0.0.1", 8000)
    assert s.metadata_url == "sqlite:///.modelyard/modelyard.db"


def test_environment_then_flags() -> None:
    env = {"MODELYARD_PORT": "9001", "MODELYARD_DATA_DIR": "/tmp/x", "MODELYARD_HOST": "0.0.0.0"}
    s = load_settings(env, port=9002, host=None)
    assert s.port == 9002 and s.host == "0.0.0.0"
    assert s.metadata_url == "sqlite:////tmp/x/modelyard.db"


def test_unknown_backend_is_a_startup_error() -> None:
    with pytest.raises(SettingsError, match="unknown metadata store 'mysql'"):
        load_settings({"MODELYARD_DATABASE_URL": "mysql://h/db"})


@pytest.mark.parametrize(
    ("env", "match"),
    [
        ({"MODELYARD_PORT": "eighty"}, "port"),
        ({"MODELYARD_SQLITE_SYNCHRONOUS": "sometimes"}, "sqlite_synchronous"),
        ({"MODELYARD_WEBHOOK_TIMEOUT_S": "0"}, "webhook_timeout_s"),
    ],
)
def test_bad_values_are_refused(env: dict[str, str], match: str) -> None:
    with pytest.raises(SettingsError, match=match):
        load_settings(env)
