"""Client subcommands for the catalog: models, versions, stage, alias and audit."""

from __future__ import annotations

import argparse
import math
from datetime import datetime
from typing import Final

from modelyard.cli import output
from modelyard.cli.commands import (
    Reply,
    Sub,
    UsageError,
    add_paging,
    command_group,
    leaf,
    listing,
    positive,
    shown,
)
from modelyard.cli.http import Params, RegistryClient, path
from modelyard.cli.serving_wait import wait_served

STAGES: Final = {s.lower(): s for s in ("None", "Staging", "Production", "Archived")}


# --- argument types ---------------------------------------------------------------------


def _stage(text: str) -> str:
    """A stage name in any case, as its canonical spelling."""
    if text.lower() not in STAGES:
        raise argparse.ArgumentTypeError(f"{text!r} is not one of {', '.join(STAGES.values())}")
    return STAGES[text.lower()]


def _pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def _tag_filter(text: str) -> str:
    _pair(text)
    return text


def _metric(text: str) -> tuple[str, float]:
    key, value = _pair(text)
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise argparse.ArgumentTypeError(f"metric {key!r} needs a finite number, got {value!r}")
    return key, number


def _timestamp(text: str) -> str:
    """An RFC 3339 time with an offset (or Z), normalised to ISO 8601."""
    try:
        at: datetime | None = datetime.fromisoformat(text)
    except ValueError:
        at = None
    if at is None or at.tzinfo is None:
        raise argparse.ArgumentTypeError(
            f"expected an RFC 3339 time with offset, e.g. 2024-05-01T12:00:00Z; got {text!r}"
        )
    return at.isoformat()


def _filters(args: argparse.Namespace) -> Params:
    return {"tag": args.tag, "stage": args.stage, "alias": args.alias, "limit": args.limit}


# --- handlers ---------------------------------------------------------------------------


def _models_list(client: RegistryClient, args: argparse.Namespace) -> Reply:
    body = listing(client, "/models", {"prefix": args.prefix, **_filters(args)}, args.all)
    return Reply(body, output.page(output.MODEL_COLUMNS, body))


def _models_create(client: RegistryClient, args: argparse.Namespace) -> Reply:
    body = {"name": args.name, "description": args.description, "tags": dict(args.tag or [])}
    return shown(client.post("/models", body))


def _models_show(client: RegistryClient, args: argparse.Namespace) -> Reply:
    return shown(client.get(path("models", args.name)))


def _bento_upload(client: RegistryClient, args: argparse.Namespace) -> Reply:
    """Stream a `.bento` archive; the server reads its tag and APIs and stores it."""
    clashing = [flag for flag in _ARTIFACT_FLAGS if getattr(args, flag) is not None]
    if clashing:
        flag = clashing[0].replace("_", "-")
        raise UsageError(f"--bento comes with its own artifact: drop --{flag}")
    params: Params = {
        "description": args.description or None,
        "run_id": args.run_id,
        "source": args.source,
        "tag": [f"{k}={v}" for k, v in args.tag or []],
        "metric": [f"{k}={v}" for k, v in args.metric or []],
        "param": [f"{k}={v}" for k, v in args.param or []],
    }
    try:
        source = open(args.bento, "rb")  # noqa: SIM115
    except OSError as exc:
        raise UsageError(f"cannot read {args.bento}: {exc.strerror}") from None
    with source:
        return shown(client.upload(path("models", args.name, "versions", "bento"), source, params))


_ARTIFACT_FLAGS = ("artifact_uri", "digest", "size", "endpoint", "bento_tag")


def _versions_create(client: RegistryClient, args: argparse.Namespace) -> Reply:
    if args.bento is not None:
        return _bento_upload(client, args)
    body = {
        "artifact_uri": args.artifact_uri,
        "digest": args.digest,
        "size_bytes": args.size,
        "endpoint": args.endpoint,
        "bento_tag": args.bento_tag,
        "run_id": args.run_id,
        "source": args.source,
        "description": args.description,
        "metrics": dict(args.metric or []),
        "params": dict(args.param or []),
        "tags": dict(args.tag or []),
    }
    return shown(client.post(path("models", args.name, "versions"), body))


def _versions_list(client: RegistryClient, args: argparse.Namespace) -> Reply:
    body = listing(client, path("models", args.name, "versions"), _filters(args), args.all)
    return Reply(body, output.page(output.VERSION_COLUMNS, body))


def _versions_show(client: RegistryClient, args: argparse.Namespace) -> Reply:
    return shown(client.get(path("models", args.name, "versions", args.version)))


def _stage_change(client: RegistryClient, args: argparse.Namespace) -> Reply:
    body = {"stage": args.stage, "archive_existing": args.archive_existing, "reason": args.reason}
    moved = client.post(path("models", args.name, "versions", args.version, "stage"), body)
    if args.wait is None:
        return shown(moved)
    if not args.json:
        print(shown(moved).text, flush=True)
    state, line, code = wait_served(client, moved, args.wait)
    return Reply({"version": moved, "deployment": state}, line, code)


def _alias_set(client: RegistryClient, args: argparse.Namespace) -> Reply:
    body = {"version": args.version, "reason": args.reason}
    version = client.put(path("models", args.name, "aliases", args.alias), body)
    return Reply(version, f"{args.name}@{args.alias} -> version {version['version']}")


def _alias_delete(client: RegistryClient, args: argparse.Namespace) -> Reply:
    client.delete(path("models", args.name, "aliases", args.alias))
    return Reply(None, f"deleted alias {args.alias} of {args.name}")


def _alias_show(client: RegistryClient, args: argparse.Namespace) -> Reply:
    url = path("models", args.name, "aliases", args.alias)
    if args.at is None:
        return shown(client.get(url))
    found = client.get(url + "/history", {"at": args.at})
    version = found["version"]
    target = "was not set" if version is None else f"-> version {version}"
    return Reply(found, f"{args.name}@{args.alias} at {found['at']} {target}")


def _audit(client: RegistryClient, args: argparse.Namespace) -> Reply:
    if args.verify:
        report = client.get(path("models", args.name, "audit", "verify"))
        return Reply(report, output.fields(report), 0 if report["ok"] else 1)
    scope = ("models", args.name) + (("versions", args.version) if args.version else ())
    body = listing(client, path(*scope, "audit"), {"limit": args.limit}, args.all)
    return Reply(body, output.page(output.AUDIT_COLUMNS, body))


# --- parsers ----------------------------------------------------------------------------


def _add_filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tag", type=_tag_filter, metavar="KEY=VALUE", help="only with this tag")
    parser.add_argument("--stage", type=_stage, help="only with a version in this stage")
    parser.add_argument("--alias", help="only with this alias")
    add_paging(parser)


def _add_tags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tag", type=_pair, action="append", metavar="KEY=VALUE", help="repeatable"
    )


def _models(sub: Sub, common: argparse.ArgumentParser) -> None:
    group = command_group(sub, "models", "list, create and show registered models")
    parser = leaf(group, common, "list", "list models", _models_list)
    parser.add_argument("--prefix", help="only names starting with this")
    _add_filters(parser)
    parser = leaf(group, common, "create", "register a model", _models_create, "name")
    parser.add_argument("--description", default="")
    _add_tags(parser)
    leaf(group, common, "show", "a model with its tags and aliases", _models_show, "name")


def _versions(sub: Sub, common: argparse.ArgumentParser) -> None:
    group = command_group(sub, "versions", "create, list and show model versions")
    parser = leaf(group, common, "create", "register a new version", _versions_create, "name")
    parser.add_argument(
        "--bento", metavar="PATH", help="a .bento archive (`bentoml export`) to upload and register"
    )
    parser.add_argument("--artifact-uri", metavar="URI", help="needs --digest and --size")
    parser.add_argument("--digest", metavar="sha256:HEX")
    parser.add_argument("--size", type=int, metavar="BYTES")
    parser.add_argument(
        "--endpoint", metavar="URL", help="a served endpoint (with or instead of an artifact)"
    )
    parser.add_argument("--bento-tag")
    parser.add_argument("--run-id")
    parser.add_argument("--source")
    parser.add_argument("--description", default="")
    _add_tags(parser)
    parser.add_argument(
        "--metric", type=_metric, action="append", metavar="KEY=NUMBER", help="repeatable"
    )
    parser.add_argument(
        "--param", type=_pair, action="append", metavar="KEY=VALUE", help="repeatable"
    )
    parser = leaf(
        group, common, "list", "list a model's versions, newest first", _versions_list, "name"
    )
    _add_filters(parser)
    leaf(group, common, "show", "one version", _versions_show, "name", "version")


def _stage_command(sub: Sub, common: argparse.ArgumentParser) -> None:
    parser = leaf(
        sub, common, "stage", "move a version to a stage", _stage_change, "name", "version"
    )
    parser.add_argument("stage", metavar="STAGE", type=_stage, help=" | ".join(STAGES.values()))
    parser.add_argument(
        "--archive-existing", action="store_true", help="archive the stage's other versions"
    )
    parser.add_argument("--reason", help="recorded in the audit log")
    parser.add_argument(
        "--wait",
        type=float,
        nargs="?",
        const=300.0,
        metavar="SECONDS",
        help="then wait until its model server answers (default 300 s; exit 1 failed, 4 timeout)",
    )


def _alias(sub: Sub, common: argparse.ArgumentParser) -> None:
    group = command_group(sub, "alias", "point, remove and resolve aliases")
    parser = leaf(
        group, common, "set", "point an alias at a version", _alias_set, "name", "alias", "version"
    )
    parser.add_argument("--reason", help="recorded in the audit log")
    leaf(group, common, "delete", "remove an alias", _alias_delete, "name", "alias")
    parser = leaf(
        group, common, "show", "the version an alias points to", _alias_show, "name", "alias"
    )
    parser.add_argument(
        "--at", type=_timestamp, metavar="RFC3339", help="where it pointed at that time"
    )


def _audit_command(sub: Sub, common: argparse.ArgumentParser) -> None:
    parser = leaf(sub, common, "audit", "a model's audit log", _audit, "name")
    parser.add_argument("--version", type=positive, help="only events of this version")
    add_paging(parser)
    parser.add_argument(
        "--verify", action="store_true", help="check the hash chain instead of listing"
    )


def register(sub: Sub, common: argparse.ArgumentParser) -> None:
    """Add the catalog commands to the `modelyard` parser."""
    for add in (_models, _versions, _stage_command, _alias, _audit_command):
        add(sub, common)
