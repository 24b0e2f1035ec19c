from __future__ import annotations

from pathlib import Path

import pytest

from adapters.sql.database_url import parse_database_url
from modelyard.settings import Settings, SettingsError, load_settings

CWD = Path("/srv/checkout")


def database_file(settings: Settings) -> Path | None:
    """Where the store opens its database: what adapters/sql/store.py reads from the URL."""
    return parse_database_url(settings.metadata_url).sqlite_path


def lead_file(settings: Settings) -> Path | None:
    return parse_database_url(settings.metadata_url).lead_path


def test_defaults_are_the_embedded_setup_in_the_working_directory() -> None:
    s = load_settings({}, cwd=CWD)
    assert (s.host, s.port) == ("127.0.0.1", 8000)
    assert s.data_dir == "/srv/checkout/.modelyard"
    assert s.metadata_url == "sqlite:////srv/checkout/.modelyard/modelyard.db"
    assert database_file(s) == Path("/srv/checkout/.modelyard/modelyard.db")
    assert lead_file(s) == Path("/srv/checkout/.modelyard/modelyard.db.lead")


def test_the_working_directory_is_read_when_not_given() -> None:
    s = load_settings({})
    assert s.data_dir == str(Path.cwd() / ".modelyard")
    assert database_file(s) == Path.cwd() / ".modelyard" / "modelyard.db"


@pytest.mark.parametrize(
    ("env", "flag", "data_dir"),
    [
        ({}, "state", "/srv/checkout/state"),
        ({"MODELYARD_DATA_DIR": "var/my"}, None, "/srv/checkout/var/my"),
        ({"MODELYARD_DATA_DIR": "ignored"}, "./a/../b", "/srv/checkout/b"),
        ({}, "../shared/data", "/srv/shared/data"),
        ({"MODELYARD_DATA_DIR": "/var/lib/modelyard"}, None, "/var/lib/modelyard"),
    ],
)
def test_a_relative_data_dir_is_made_absolute_against_the_working_directory(
    env: dict[str, str], flag: str | None, data_dir: str
) -> None:
    s = load_settings(env, cwd=CWD, data_dir=flag)
    assert s.data_dir == data_dir
    assert database_file(s) == Path(data_dir) / "modelyard.db"
    assert lead_file(s) == Path(data_dir) / "modelyard.db.lead"


@pytest.mark.parametrize(
    ("url", "resolved", "file"),
    [
        # SQLAlchemy's convention: three slashes and a relative path, four for an absolute one
        ("sqlite:///meta.db", "sqlite:////srv/checkout/meta.db", "/srv/checkout/meta.db"),
        ("sqlite:///db/../m.db", "sqlite:////srv/checkout/m.db", "/srv/checkout/m.db"),
        ("sqlite:////var/db/m.db", "sqlite:////var/db/m.db", "/var/db/m.db"),
        ("postgresql://u@db:5432/x", "postgresql://u@db:5432/x", None),
        ("postgres://u@db/x", "postgres://u@db/x", None),
    ],
)
def test_database_url_paths_follow_sqlalchemy_and_resolve_against_the_working_directory(
    url: str, resolved: str, file: str | None
) -> None:
    s = load_settings({"MODELYARD_DATABASE_URL": url}, cwd=CWD, data_dir="elsewhere")
    assert s.metadata_url == s.database_url == resolved
    assert database_file(s) == (None if file is None else Path(file))
    assert lead_file(s) == (None if file is None else Path(file + ".lead"))
    assert s.data_dir == "/srv/checkout/elsewhere"  # uploads and artifacts stay there


def test_the_flag_wins_over_the_environment_for_the_database_url() -> None:
    env = {"MODELYARD_DATABASE_URL": "sqlite:///env.db"}
    s = load_settings(env, cwd=CWD, database_url="sqlite:///flag.db")
    assert database_file(s) == Path("/srv/checkout/flag.db")


def test_the_url_parser_keeps_relative_paths_relative() -> None:
    """Outside the settings (tests, tools), the URL keeps SQLAlchemy's meaning: relative to
    where the process stands when the store opens."""
    parsed = parse_database_url("sqlite:///data/m.db")
    assert (parsed.kind, parsed.sqlite_path) == ("sqlite", Path("data/m.db"))
    assert parsed.lead_path == Path("data/m.db.lead")
    assert parsed.resolved(CWD).sqlite_path == Path("/srv/checkout/data/m.db")
    assert parse_database_url("postgresql://u@h/db").kind == "postgresql"


def test_environment_then_flags() -> None:
    env = {"MODELYARD_PORT": "9001", "MODELYARD_DATA_DIR": "/tmp/x", "MODELYARD_HOST": "0.0.0.0"}
    s = load_settings(env, cwd=CWD, port=9002, host=None)
    assert s.port == 9002 and s.host == "0.0.0.0"
    assert s.metadata_url == "sqlite:////tmp/x/modelyard.db"


def test_unknown_backend_is_a_startup_error() -> None:
    with pytest.raises(SettingsError, match="unknown metadata store 'mysql'"):
        load_settings({"MODELYARD_DATABASE_URL": "mysql://h/db"}, cwd=CWD)


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("sqlite://", "names no database file"),  # SQLAlchemy's in-memory database
        ("sqlite:///:memory:", "names no database file"),
        ("sqlite:///file:m.db?mode=memory", "URI filenames"),
        ("sqlite://localhost/m.db", "names a host"),
        ("sqlite:///m.db?timeout=5", "options"),
        ("sqlite:///data/", "names a folder"),
        ("sqlite:////", "names a folder"),
        ("sqlite:///..", "names a folder"),
        ("/var/db/m.db", "is not a URL"),
    ],
)
def test_database_urls_that_cannot_work_are_refused_at_start(url: str, match: str) -> None:
    with pytest.raises(SettingsError, match=match) as refused:
        load_settings({"MODELYARD_DATABASE_URL": url}, cwd=CWD)
    assert "sqlite:////ABSOLUTE/PATH" in str(refused.value)  # and says what would work


def test_an_empty_data_dir_flag_is_refused() -> None:
    with pytest.raises(SettingsError, match="data_dir must name a folder"):
        load_settings({}, cwd=CWD, data_dir="")


def test_the_working_directory_given_must_be_absolute() -> None:
    with pytest.raises(SettingsError, match="working directory must be an absolute path"):
        load_settings({}, cwd=Path("relative"))


@pytest.mark.parametrize(
    "fields",
    [{"data_dir": "rel"}, {"data_dir": "/abs", "database_url": "sqlite:///rel.db"}],
)
def test_settings_never_hold_a_relative_path(fields: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="relative"):
        Settings(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("env", "match"),
    [
        ({"MODELYARD_PORT": "eighty"}, "port"),
        ({"MODELYARD_SQLITE_SYNCHRONOUS": "sometimes"}, "sqlite_synchronous"),
        ({"MODELYARD_WEBHOOK_TIMEOUT_S": "0"}, "webhook_timeout_s"),
        ({"MODELYARD_SWEEP_INTERVAL_S": "0"}, "sweep_interval_s"),
        ({"MODELYARD_SWEEP_MIN_AGE_S": "-1"}, "sweep_min_age_s"),
        ({"MODELYARD_SWEEP_MIN_AGE_S": "an hour"}, "sweep_min_age_s"),
        ({"MODELYARD_GRPC_PORT": "-1"}, "grpc_port"),
        ({"MODELYARD_GRPC_PORT": "65536"}, "grpc_port"),
    ],
)
def test_bad_values_are_refused(env: dict[str, str], match: str) -> None:
    with pytest.raises(SettingsError, match=match):
        load_settings(env, cwd=CWD)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"MODELYARD_DEPLOYER": "k8s"},
            "deployer (MODELYARD_DEPLOYER): unknown deployer 'k8s'; use local or none,"
            " or leave it empty",
        ),
        (
            {"MODELYARD_LOG_LEVEL": "verbose"},
            "log_level (MODELYARD_LOG_LEVEL): unknown log level 'verbose'; use critical, error,"
            " warning, info, debug or trace",
        ),
        (
            {"MODELYARD_SQLITE_SYNCHRONOUS": "sometimes"},
            "sqlite_synchronous (MODELYARD_SQLITE_SYNCHRONOUS): unknown mode 'sometimes'; use"
            " OFF, NORMAL, FULL or EXTRA",
        ),
        (
            {"MODELYARD_PORT": "eighty"},
            "port (MODELYARD_PORT): invalid value 'eighty': Expected `int`, got `str`",
        ),
    ],
)
def test_a_refused_value_names_the_setting_and_its_variable(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(SettingsError) as refused:
        load_settings(env, cwd=CWD)
    assert str(refused.value) == message


def test_levels_and_sqlite_modes_are_read_in_any_case() -> None:
    s = load_settings({"MODELYARD_LOG_LEVEL": "DEBUG"}, cwd=CWD, sqlite_synchronous="normal")
    assert (s.log_level, s.sqlite_synchronous) == ("debug", "NORMAL")
    with pytest.raises(SettingsError, match="log_format"):
        load_settings({"MODELYARD_LOG_FORMAT": "JSON"}, cwd=CWD)  # as before: exact words only


def test_the_grpc_port_is_tritons_by_default_and_zero_turns_it_off() -> None:
    assert load_settings({}, cwd=CWD).grpc_port == 8001
    assert load_settings({"MODELYARD_GRPC_PORT": "0"}, cwd=CWD).grpc_port == 0
    assert load_settings({"MODELYARD_GRPC_PORT": "9001"}, cwd=CWD).grpc_port == 9001
