"""`modelyard`: run the service (`serve`, `registry`) or talk to a running registry."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence

from modelyard import __version__
from modelyard.cli import (
    catalog_commands,
    experiment_commands,
    rollout_commands,
    token_commands,
    version_server,
)
from modelyard.cli.commands import common
from modelyard.settings import (
    DEFAULT_DATA_DIR,
    DEFAULT_HOST,
    DEFAULT_LOG_LEVEL,
    DEFAULT_PORT,
    SettingsError,
    load_settings,
)


def _add_server(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help_: str
) -> None:
    p = sub.add_parser(name, help=help_)
    p.add_argument("--host", help=f"bind address (MODELYARD_HOST, default {DEFAULT_HOST})")
    p.add_argument("--port", type=int, help=f"port (MODELYARD_PORT, default {DEFAULT_PORT})")
    p.add_argument(
        "--data-dir",
        help="data folder, relative to the working directory (MODELYARD_DATA_DIR,"
        f" default ./{DEFAULT_DATA_DIR})",
    )
    p.add_argument(
        "--database-url",
        help="sqlite:///RELATIVE/PATH, sqlite:////ABSOLUTE/PATH or postgresql://..."
        " (MODELYARD_DATABASE_URL; default: SQLite in the data folder)",
    )
    p.add_argument(
        "--log-level", help=f"uvicorn log level (MODELYARD_LOG_LEVEL, default {DEFAULT_LOG_LEVEL})"
    )
    p.set_defaults(run=_run_server, role=name)


def _run_server(args: argparse.Namespace) -> int:
    from modelyard.server import run

    try:
        settings = load_settings(
            os.environ,
            host=args.host,
            port=args.port,
            data_dir=args.data_dir,
            database_url=args.database_url,
            log_level=args.log_level,
        )
    except SettingsError as exc:
        print(f"modelyard: {exc}", file=sys.stderr)
        return 2
    run(settings, args.role)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="modelyard", description=__doc__)
    parser.add_argument("--version", action="version", version=f"modelyard {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_server(sub, "serve", "run registry and gateway in one process")
    _add_server(sub, "registry", "run the registry role alone")
    _add_server(sub, "gateway", "run a gateway that follows a registry (MODELYARD_REGISTRY_URL)")
    version_server.register(sub)
    options = common()
    catalog_commands.register(sub, options)
    token_commands.register(sub, options)
    rollout_commands.register(sub, common())
    experiment_commands.register(sub, common())
    return parser


#: A shell's exit status for a process that SIGPIPE ended: what `modelyard ... | head` reports
#: (with `set -o pipefail`) when the reader stops early, as for any Unix filter.
EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.run(args)
        sys.stdout.flush()  # here, so a reader that went away is seen inside this `try`
    except BrokenPipeError:
        # The reader closed the pipe (`| head`): stop quietly. Python flushes stdout again at
        # exit; point it at /dev/null so that flush cannot fail and print a traceback.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    return code
