"""Client subcommands for A/B experiments: start, list, show (per-arm results and the verdict,
printed by `experiment_output`), feedback (outcomes from a file or stdin, checked whole before
any is sent), stop."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Final

import msgspec

from modelyard.cli import experiment_output as shown
from modelyard.cli import outcome_lines
from modelyard.cli.commands import Reply, Sub, UsageError, command_group, leaf
from modelyard.cli.http import ApiError, RegistryClient, Unreachable, path
from modelyard.cli.output import Json, table

METRICS: Final = ("conversion", "reward")
MODES: Final = ("fixed", "bandit")
STICKY: Final = ("header", "cookie", "json_field")
REASON_HEADER: Final = "x-change-reason"
LIST_MAX: Final = 200

# Every field of the experiment spec (registry.experiments.stats.ExperimentSpec; a nested Struct's
# fields dotted, a list's items' as `name[].field`) and the flag of `experiments start` that
# sets it. A unit test derives the fields from the Struct: a new field without a flag fails it.
SPEC_FLAGS: Final = {
    "arms[].version": "--arm",
    "arms[].weight": "--arm",
    "sticky.header": "--sticky-header",
    "sticky.cookie": "--sticky-cookie",
    "sticky.json_field": "--sticky-json-field",
    "metric": "--metric",
    "alpha": "--alpha",
    "min_sample_per_arm": "--min-sample",
    "mode": "--mode",
    "mde": "--mde",
}

START_EPILOG: Final = """\
example:
  modelyard experiments start iris --arms 1=50 2=50 --sticky-header x-user
  EX=$(modelyard experiments start iris --arms 1 2 --sticky-cookie uid --quiet)
"""

_MAX_COUNT, _BATCH = outcome_lines.MAX_OUTCOMES, outcome_lines.BATCH_MAX_OUTCOMES
_MAX_MIB = outcome_lines.MAX_INPUT_BYTES // 2**20
FEEDBACK_EPILOG: Final = f"""\
outcomes, one a line (blank lines are skipped), as JSON lines:
  {{"key": "user-7", "value": 1}}   by the sticky key the request carried
  {{"version": 2, "value": 0.5}}    by the version that served it (x-modelyard-version)
  {{"key": "user-7", "value": 1, "covariate": 4}}   with a figure from before the experiment
                                    (CUPED: the results use it when every outcome has one)
or as CSV rows, with an optional header row `key,value` (or `version,value`; end it with
`,covariate` to give a third column of covariates):
  user-7,1
A conversion is 0 or 1, a reward any number. Every line is checked before anything is
sent: with a bad line nothing is sent, and the error gives each bad line's number.
At most {_MAX_COUNT:,} outcomes ({_MAX_MIB} MiB), sent in requests of at most {_BATCH:,}.

examples:
  modelyard experiments feedback "$EX" --file outcomes.jsonl
  printf 'user-7,1\\nuser-8,0\\n' | modelyard experiments feedback "$EX"
"""


# --- argument types and the spec ------------------------------------------------------------


def arm(text: str) -> tuple[int, float | None]:
    """VERSION=WEIGHT, or VERSION alone (its weight is a share of what the others leave)."""
    version, sep, weight = text.partition("=")
    try:
        number = int(version)
        share = float(weight) if sep else None
    except ValueError:
        number, share = 0, None
    if number < 1 or (share is not None and not 0 < share <= 100):
        raise argparse.ArgumentTypeError(f"expected VERSION=WEIGHT (e.g. 2=50), got {text!r}")
    return number, share


def _whole(low: int, high: int | None = None) -> Callable[[str], int]:
    """A whole number from `low` (to `high`)."""

    def whole(text: str) -> int:
        number = int(text) if text.isdigit() else low - 1
        if number < low or (high is not None and number > high):
            span = f"an integer >= {low}" if high is None else f"{low} to {high}"
            raise argparse.ArgumentTypeError(f"expected {span}, got {text!r}")
        return number

    return whole


def arms_of(given: list[tuple[int, float | None]]) -> list[Json]:
    """The arms, the weights left out sharing evenly what the given ones leave of 100 %."""
    if len(given) < 2:
        raise UsageError("give at least two arms: --arms 1=50 2=50 (or --arm VERSION=WEIGHT ...)")
    fixed = sum(w for _, w in given if w is not None)
    free = sum(w is None for _, w in given)
    share = (100.0 - fixed) / free if free else 0.0
    if free and share <= 0:
        raise UsageError(f"the weights given add up to {fixed:g}%: nothing left for the others")
    return [{"version": v, "weight": share if w is None else w} for v, w in given]


def spec_of(args: argparse.Namespace) -> Json:
    """The experiment spec (the API's body) from the flags of `experiments start`."""
    spec: Json = {"arms": arms_of(args.arms or [])}
    spec["sticky"] = {
        k: getattr(args, f"sticky_{k}") for k in STICKY if getattr(args, f"sticky_{k}")
    }
    optional = {"metric": args.metric, "alpha": args.alpha, "min_sample_per_arm": args.min_sample}
    optional["mode"] = args.mode
    optional["mde"] = args.mde
    spec.update({k: v for k, v in optional.items() if v is not None})
    return spec


# --- handlers -----------------------------------------------------------------------------------


def _start(client: RegistryClient, args: argparse.Namespace) -> Reply:
    if args.quiet and args.json:
        raise UsageError("--quiet prints the id alone, --json the whole answer: choose one")
    body = client.post(path("models", args.name, "experiments"), spec_of(args))
    text = (
        f"started experiment {body['id']} of {body['model']}: {shown.arms(body)};"
        f" metric {body['spec']['metric']}; sticky {shown.sticky(body['spec'])}"
    )
    return Reply(body, body["id"] if args.quiet else text)


def _list(client: RegistryClient, args: argparse.Namespace) -> Reply:
    body = client.get(path("models", args.name, "experiments"), {"limit": args.limit})
    return Reply(body, table(shown.EXPERIMENT_COLUMNS, [shown.row(x) for x in body]))


def _show(client: RegistryClient, args: argparse.Namespace) -> Reply:
    view = client.get(path("experiments", args.experiment_id))
    return Reply(view, shown.render(view))


def _read_input(source: str | None) -> tuple[bytes, str]:
    """The bytes of the file, or of stdin (`-`, or piped), and where they came from: at most
    one byte past the size limit, so that parsing refuses an input too large."""
    limit = outcome_lines.MAX_INPUT_BYTES + 1
    if source is None or source == "-":
        stdin = sys.stdin
        if stdin is None or (source is None and stdin.isatty()):
            raise UsageError("no outcomes: give --file FILE, or pipe them in (see --help)")
        buffer = getattr(stdin, "buffer", None)
        data = buffer.read(limit) if buffer is not None else stdin.read(limit).encode()
        return data, "stdin"
    try:
        with open(source, "rb") as file:
            return file.read(limit), source
    except OSError as exc:
        raise UsageError(f"cannot read {source}: {exc.strerror}") from None


def _feedback(client: RegistryClient, args: argparse.Namespace) -> Reply:
    """Check every line against the experiment, then send the outcomes in batches."""
    url = path("experiments", args.experiment_id)
    spec = client.get(url)["experiment"]["spec"]
    rules = outcome_lines.Rules(
        conversion=spec["metric"] == "conversion",
        arms=frozenset(a["version"] for a in spec["arms"]),
    )
    data, where = _read_input(args.file)
    try:
        parsed = outcome_lines.parse(data, rules)
    except outcome_lines.BadInput as exc:
        detail = str(exc).replace("\n", "\n  ")
        raise UsageError(f"{where}: nothing was sent:\n  {detail}") from None
    ranges = outcome_lines.batches(parsed.outcomes)
    accepted = 0
    for i, (start, end) in enumerate(ranges):
        body = msgspec.json.encode({"outcomes": parsed.outcomes[start:end]})  # as batched
        try:
            accepted += client.post(url + "/feedback", body)["accepted"]
        except (ApiError, Unreachable) as exc:
            if i == 0:
                raise
            raise _partly_sent(exc, parsed.lines, start) from None
    summary = {"accepted": accepted, "requests": len(ranges)}
    text = f"recorded {accepted} outcomes from {where} in {len(ranges)} request(s)"
    return Reply(summary, text)


def _partly_sent(exc: ApiError | Unreachable, lines: list[int], start: int) -> Exception:
    """The error of a later batch, saying what was recorded before it and where to resume."""
    note = (
        f"; the outcomes of lines {lines[0]}-{lines[start - 1]} were recorded,"
        f" those from line {lines[start]} on were not"
    )
    if isinstance(exc, ApiError):
        return ApiError(exc.status, exc.code, exc.message + note, exc.field)
    return Unreachable(exc.url, exc.reason + note)


def _stop(client: RegistryClient, args: argparse.Namespace) -> Reply:
    if args.reason is not None and not args.reason.isascii():
        raise UsageError("--reason: ASCII text only (it is sent in a header)")
    headers = {REASON_HEADER: args.reason} if args.reason else None
    body = {} if args.promote is None else {"promote": args.promote}
    stopped = client.post(path("experiments", args.experiment_id, "stop"), body, headers)
    promoted = "" if stopped["winner"] is None else f"; version {stopped['winner']} is Production"
    return Reply(stopped, f"experiment {stopped['id']}: {stopped['phase']}{promoted}")


# --- parsers ------------------------------------------------------------------------------------


def _start_parser(group: Sub, common: argparse.ArgumentParser) -> None:
    start = leaf(group, common, "start", "split a model's traffic into sticky arms", _start, "name")
    start.formatter_class = argparse.RawDescriptionHelpFormatter
    start.epilog = START_EPILOG
    arms = start.add_argument_group("arms (at least two; weights in % add up to 100)")
    arms.add_argument(
        "--arm",
        dest="arms",
        type=arm,
        action="append",
        metavar="VERSION=WEIGHT",
        help="one arm (repeatable); a VERSION alone shares what is left",
    )
    arms.add_argument(
        "--arms",
        dest="arms",
        type=arm,
        action="extend",
        nargs="+",
        metavar="VERSION=WEIGHT",
        help="several arms at once: --arms 1=50 2=50",
    )
    arms.add_argument(
        "--mode",
        choices=MODES,
        help="fixed (the weights stay, the default) or bandit (Thompson sampling moves traffic"
        " toward the better arms; outcomes by key only)",
    )
    sticky = start.add_argument_group("sticky key: keeps a user on one arm (give one)")
    one = sticky.add_mutually_exclusive_group(required=True)
    one.add_argument("--sticky-header", metavar="HEADER", help="by a request header")
    one.add_argument("--sticky-cookie", metavar="COOKIE", help="by a cookie")
    one.add_argument("--sticky-json-field", metavar="FIELD", help="by a field of the JSON body")
    judged = start.add_argument_group("results")
    judged.add_argument(
        "--metric",
        choices=METRICS,
        help="conversion (each outcome 0 or 1, the default) or reward (any number)",
    )
    judged.add_argument(
        "--alpha", type=float, help="significance level, shared by the comparisons (default 0.05)"
    )
    judged.add_argument(
        "--min-sample",
        type=_whole(2),
        metavar="N",
        help="outcomes per arm before a verdict (default 100)",
    )
    judged.add_argument(
        "--mde",
        type=float,
        metavar="LIFT",
        help="the minimum detectable effect, relative to the control's mean: the always-valid"
        " test is tuned to find it (default 0.1, +10 %%)",
    )
    start.add_argument("--quiet", action="store_true", help="print only the new experiment's id")


def register(sub: Sub, common: argparse.ArgumentParser) -> None:
    group = command_group(
        sub, "experiments", "A/B experiments over sticky arms, judged on outcomes"
    )
    _start_parser(group, common)
    listing = leaf(group, common, "list", "a model's experiments, newest first", _list, "name")
    listing.add_argument(
        "--limit", type=_whole(1, LIST_MAX), help=f"at most this many (default 50, max {LIST_MAX})"
    )
    for verb, help_, handler in (
        ("show", "an experiment's per-arm results and verdict", _show),
        ("feedback", "send outcomes from a file or stdin", _feedback),
        ("stop", "end the split (and promote a version)", _stop),
    ):
        parser = leaf(group, common, verb, help_, handler)
        parser.add_argument("experiment_id", metavar="ID", help="experiment id (ex-...)")
    feedback, stop = group.choices["feedback"], group.choices["stop"]
    feedback.formatter_class = argparse.RawDescriptionHelpFormatter
    feedback.epilog = FEEDBACK_EPILOG
    feedback.add_argument(
        "--file",
        metavar="FILE",
        help="read the outcomes from FILE (- for stdin; default: piped stdin)",
    )
    stop.add_argument(
        "--promote",
        type=_whole(1),
        metavar="VERSION",
        help="make this arm's version Production (the old one is archived)",
    )
    stop.add_argument("--reason", help="recorded in the audit log")
