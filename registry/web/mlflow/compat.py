"""Where MLflow's server answers differently from modelyard's own API, the MLflow dialect does as
MLflow does (each checked against mlflow/server/handlers.py and the SQLAlchemy store):

- a version's `source` may not be a local path (`/etc`, `file:///etc/passwd`, `models/x`) nor
  hold relative references (`s3://b/../../x`): 400 INVALID_PARAMETER_VALUE with MLflow's
  message. (MLflow accepts a local path inside the artifact directory of the run named by
  `run_id`; modelyard keeps no runs, so it refuses every local path.) Prompts are not checked;
- deleting a tag or an alias that does not exist is a no-op (a missing model still is not);
- an alias that does not exist is 400 INVALID_PARAMETER_VALUE, not 404;
- a promotion refused because Production is taken (where MLflow is wrong: it lets any number
  of versions be in Production) names MLflow's parameter, `archive_existing_versions`.
"""

from __future__ import annotations

import posixpath
import re
import urllib.parse
from collections.abc import Awaitable
from typing import Final, TypeVar

from registry.errors import InvalidInput, NotFound, StageOccupied

IS_PROMPT_TAG: Final = "mlflow.prompt.is_prompt"
V = TypeVar("V")
_WINDOWS_DRIVE: Final = re.compile(r"^[a-zA-Z]:[\\/]")


def is_local(source: str) -> bool:
    """MLflow's `is_local_uri` for a model version source."""
    if _WINDOWS_DRIVE.match(source):
        return True
    parsed = urllib.parse.urlparse(source)
    if parsed.scheme == "":
        return True
    return parsed.scheme == "file" and parsed.netloc in ("", "localhost", "127.0.0.1")


def _has_relative_parts(source: str) -> bool:
    while (unquoted := urllib.parse.unquote_plus(source)) != source:
        source = unquoted
    path = re.sub(r"/+", "/", urllib.parse.urlparse(source).path.rstrip("/"))
    if "\x00" in path or any(part == ".." for part in source.split("/")):
        return True
    return bool(path) and posixpath.normpath(path) != path


def check_source(source: str, tags: dict[str, str]) -> None:
    if IS_PROMPT_TAG in tags:
        return
    if is_local(source):
        raise InvalidInput(
            f"Invalid model version source: '{source}'. To use a local path as a model version"
            " source, the run_id request parameter has to be specified and the local path has to"
            " be contained within the artifact directory of the run specified by the run_id.",
            field="source",
        )
    if _has_relative_parts(source):
        raise InvalidInput(
            f"Invalid model version source: '{source}'. If supplying a source as an http, https,"
            " local file path, ftp, objectstore, or mlflow-artifacts uri, an absolute path must"
            " be provided without relative path references present. Please provide an absolute"
            " path.",
            field="source",
        )


async def unless_missing(write: Awaitable[object], field: str) -> None:
    """Run a delete; the thing it deletes (`field`: key or alias) being absent is no error."""
    try:
        await write
    except NotFound as exc:
        if exc.field != field:
            raise


async def alias_or_invalid(read: Awaitable[V], alias: str) -> V:
    try:
        return await read
    except NotFound:
        raise InvalidInput(f"Registered model alias {alias} not found.", field="alias") from None


async def named_for_mlflow(write: Awaitable[V]) -> V:
    """A stage change; its refusal names the parameter as MLflow spells it."""
    try:
        return await write
    except StageOccupied as exc:
        message = exc.message.replace("archive_existing=", "archive_existing_versions=")
        raise StageOccupied(message, field="archive_existing_versions") from None
