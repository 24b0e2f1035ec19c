"""Client subcommands for API tokens (admin): create, list, revoke."""

from __future__ import annotations

import argparse
from typing import Final

from modelyard.cli import output
from modelyard.cli.commands import Reply, Sub, command_group, leaf, shown
from modelyard.cli.http import RegistryClient, path

ROLES: Final = ("reader", "deployer", "admin")


def _create(client: RegistryClient, args: argparse.Namespace) -> Reply:
    return shown(client.post("/tokens", {"name": args.token_name, "role": args.role}))


def _list(client: RegistryClient, args: argparse.Namespace) -> Reply:
    body = client.get("/tokens")
    return Reply(body, output.page(output.TOKEN_COLUMNS, body))


def _revoke(client: RegistryClient, args: argparse.Namespace) -> Reply:
    token = client.delete(path("tokens", args.id))
    return Reply(token, f"revoked token {token['id']} ({token['name']})")


def register(sub: Sub, common: argparse.ArgumentParser) -> None:
    group = command_group(sub, "tokens", "API tokens (admin)")
    parser = leaf(group, common, "create", "issue a token (its secret is shown once)", _create)
    parser.add_argument("token_name", metavar="NAME", help="who or what the token is for")
    parser.add_argument("--role", required=True, type=str.lower, choices=ROLES)
    leaf(group, common, "list", "list tokens (secrets are never shown)", _list)
    leaf(group, common, "revoke", "revoke a token", _revoke, "id")
