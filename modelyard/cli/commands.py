"""What every client command shares: the registry and output options, positional arguments,
calling the registry and printing the reply (or the error) with the exit code.

Exit codes: 0 done, 1 the server answered an error (or `audit --verify` found a broken chain),
2 a usage error or no answer from the server.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Final, TypeAlias

from modelyard.cli import output
from modelyard.cli.http import ApiError, Params, RegistryClient, Unreachable
from modelyard.cli.output import Json
from modelyard.settings import DEFAULT_REGISTRY_URL

DEFAULT_URL: Final = DEFAULT_REGISTRY_URL

Sub: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


class UsageError(Exception):
    """Arguments that argparse accepted but that do not make sense together (exit 2)."""


@dataclass(frozen=True)
class Reply:
    """A command's result: `data` is printed with --json, `text` otherwise."""

    data: Any
    text: str
    code: int = 0


Handler = Callable[[RegistryClient, argparse.Namespace], Reply]


def positive(text: str) -> int:
    """An argument type: a positive integer."""
    number = int(text) if text.isdigit() else 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return number


POSITIONALS: Final[dict[str, tuple[Callable[[str], Any], str]]] = {
    "name": (str, "model name"),
    "version": (positive, "version number"),
    "alias": (str, "alias name"),
    "id": (positive, "token id"),
}


# --- running a command ------------------------------------------------------------------


def _execute(handler: Handler, args: argparse.Namespace) -> int:
    """Call the registry; print the reply (or the error) and give the exit code."""
    url = args.url or os.environ.get("MODELYARD_URL") or DEFAULT_URL
    token = (args.token or os.environ.get("MODELYARD_TOKEN") or "").strip() or None
    try:
        with RegistryClient(url, token) as client:
            reply = handler(client, args)
    except ApiError as exc:
        _report(str(exc), "pass --token or set MODELYARD_TOKEN" if token is None else None)
        return 1
    except Unreachable as exc:
        _report(str(exc), "is the registry running? check --url or MODELYARD_URL")
        return 2
    except UsageError as exc:
        _report(str(exc), None)
        return 2
    if not args.json:
        print(reply.text)
    elif reply.data is not None:
        print(json.dumps(reply.data, indent=2))
    return reply.code


def _report(message: str, hint: str | None) -> None:
    print(f"error: {message}", file=sys.stderr)
    if hint:
        print(f"hint: {hint}", file=sys.stderr)


def listing(client: RegistryClient, url: str, params: Params, follow: bool) -> Json:
    """One page, or with `follow` every page joined into one (`next_cursor` then null)."""
    body: Json = client.get(url, params)
    items = list(body["items"])
    while follow and body.get("next_cursor"):
        body = client.get(url, {**params, "cursor": body["next_cursor"]})
        items.extend(body["items"])
    return {**body, "items": items}


def shown(data: Json) -> Reply:
    """A reply that prints one object's fields."""
    return Reply(data, output.fields(data))


# --- parsers ----------------------------------------------------------------------------


def common() -> argparse.ArgumentParser:
    """The options every client command takes."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("registry and output")
    group.add_argument("--url", help=f"registry base URL (MODELYARD_URL, default {DEFAULT_URL})")
    group.add_argument(
        "--token", help="API token (MODELYARD_TOKEN; the env var keeps it out of ps)"
    )
    group.add_argument("--json", action="store_true", help="print the raw JSON response")
    return parent


def command_group(sub: Sub, name: str, help_: str) -> Sub:
    parser = sub.add_parser(name, help=help_, description=help_)
    return parser.add_subparsers(dest=f"{name}_command", required=True, metavar="COMMAND")


def leaf(
    sub: Sub,
    common: argparse.ArgumentParser,
    name: str,
    help_: str,
    handler: Handler,
    *positionals: str,
) -> argparse.ArgumentParser:
    parser = sub.add_parser(name, help=help_, description=help_, parents=[common])
    for arg in positionals:
        kind, arg_help = POSITIONALS[arg]
        parser.add_argument(arg, metavar=arg.upper(), type=kind, help=arg_help)
    parser.set_defaults(run=partial(_execute, handler))
    return parser


def add_paging(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--limit", type=positive, help="page size (server default 100, max 1000)")
    parser.add_argument("--all", action="store_true", help="follow next_cursor through every page")
