"""The feedback-line parser of `modelyard experiments feedback`: JSON lines and CSV, every bad
line named by its number, the input bounded, and batches the API accepts."""

from __future__ import annotations

import msgspec
import pytest

from modelyard.cli import outcome_lines as ol
from modelyard.cli.outcome_lines import BadInput, Outcome, Rules, batches, parse
from registry.experiments.stats import Feedback

CONVERSION = Rules(conversion=True, arms=frozenset({1, 2}))


def problems(data: bytes, rules: Rules | None = None) -> list[tuple[int, str]]:
    with pytest.raises(BadInput) as refused:
        parse(data, rules)
    return refused.value.problems


def test_json_lines_by_key_and_by_version() -> None:
    data = b'{"key": "user-7", "value": 1}\n\n{"version": 2, "value": 0.5}\n'
    parsed = parse(data)
    assert parsed.outcomes == [Outcome(1.0, key="user-7"), Outcome(0.5, version=2)]
    assert parsed.lines == [1, 3]  # the blank line 2 is skipped, yet counted


def test_csv_rows_with_and_without_a_header() -> None:
    assert parse(b"user-7,1\nuser-8, 0\n").outcomes == [
        Outcome(1.0, key="user-7"),
        Outcome(0.0, key="user-8"),
    ]
    with_header = parse(b"Key,Value\n user-7 ,1\n")
    assert (with_header.outcomes, with_header.lines) == ([Outcome(1.0, key="user-7")], [2])
    by_version = parse(b"version,value\n2,0.25\n1,-3e2\n")
    assert by_version.outcomes == [Outcome(0.25, version=2), Outcome(-300.0, version=1)]


def test_quoted_keys_crlf_and_a_byte_order_mark() -> None:
    data = b'\xef\xbb\xbfkey,value\r\n"a,b",1\r\n"say ""hi""",0\r\n'
    assert parse(data).outcomes == [Outcome(1.0, key="a,b"), Outcome(0.0, key='say "hi"')]


def test_what_is_sent_is_what_the_api_takes() -> None:
    parsed = parse(b'{"key": "u", "value": 1}\n{"version": 2, "value": 0}\n')
    body = msgspec.json.encode({"outcomes": parsed.outcomes})
    sent = msgspec.json.decode(body, type=Feedback)  # the API's own input Struct
    assert [(o.key, o.version, o.value) for o in sent.outcomes] == [("u", None, 1.0), (None, 2, 0)]


@pytest.mark.parametrize(
    ("line", "complaint"),
    [
        (b'{"key": "u", "value": 1', "not valid JSON: Input data was truncated"),
        (b'{"key": "u", "value": NaN}', "not valid JSON: JSON is malformed"),
        (b'{"key": "u", "value": "1"}', "Expected `float`, got `str` - at `$.value`"),
        (b'{"key": "u", "value": true}', "Expected `float`, got `bool`"),
        (b'{"user": "u", "value": 1}', "unknown field `user`"),
        (b'{"key": "u"}', "missing required field `value`"),
        (b'{"key": "u", "version": 1, "value": 1}', "exactly one of key, version"),
        (b'{"value": 1}', "exactly one of key, version"),
        (b'{"key": "", "value": 1}', "length >= 1"),
        (b'{"key": "' + b"k" * 257 + b'", "value": 1}', "length <= 256"),
        (b'{"version": 0, "value": 1}', "`int` >= 1"),
        (b'{"key": "u", "value": 1e999}', "Number out of range"),
        (b"user-8,1", "expected a JSON object"),
    ],
)
def test_a_bad_json_line_is_named_by_its_number(line: bytes, complaint: str) -> None:
    data = b'{"key": "ok", "value": 1}\n\n' + line + b"\n"
    found = problems(data)
    assert [n for n, _ in found] == [3]
    assert complaint in found[0][1], found


@pytest.mark.parametrize(
    ("line", "complaint"),
    [
        (b"user-8", "expected 2 fields (key,value), got 1"),
        (b"user-8,1,2", "expected 2 fields (key,value), got 3"),
        (b"user-8,", "value '' is not a number"),
        (b"user-8,nan", "value 'nan' is not a number"),
        (b"user-8,inf", "value 'inf' is not a number"),
        (b"user-8,1_0", "value '1_0' is not a number"),
        (b",1", "a key has 1 to 256 characters"),
        (b'"user-8,1', "not a CSV row"),
        (b'{"key": "u", "value": 1}', "a JSON line in CSV input"),
        (b"\xff\xfe,1", "not UTF-8 text"),
        (b"k" * 5000, "longer than 4096 bytes"),
    ],
)
def test_a_bad_csv_line_is_named_by_its_number(line: bytes, complaint: str) -> None:
    found = problems(b"key,value\nuser-7,1\n" + line + b"\n")
    assert [n for n, _ in found] == [3]
    assert complaint in found[0][1], found


def test_an_unknown_header_gets_a_hint() -> None:
    assert problems(b"user,outcome\nu,1\n") == [
        (1, "value 'outcome' is not a number (a header row is `key,value` or `version,value`)")
    ]
    assert problems(b"key,value\nu,x\n") == [(2, "value 'x' is not a number")]


def test_csv_versions_are_positive_integers() -> None:
    found = problems(b"version,value\n2,1\nv2,1\n0,1\n1.5,1\n")
    assert [n for n, _ in found] == [3, 4, 5]
    assert all("is not a positive integer" in what for _, what in found)


def test_the_experiment_rules_conversions_and_arms() -> None:
    assert parse(b"u,1\nv,0\n", CONVERSION).outcomes[1] == Outcome(0.0, key="v")
    found = problems(b"u,2\nv,1\n", CONVERSION)
    assert found == [(1, "a conversion is 0 or 1, got 2")]
    found = problems(b'{"version": 3, "value": 1}\n{"key": "u", "value": 0.5}\n', CONVERSION)
    assert found == [
        (1, "version 3 is not an arm (arms: 1, 2)"),
        (2, "a conversion is 0 or 1, got 0.5"),
    ]
    rewards = Rules(conversion=False, arms=frozenset({1, 2}))
    assert parse(b"u,0.5\n", rewards).outcomes == [Outcome(0.5, key="u")]


def test_every_bad_line_is_listed_up_to_a_limit() -> None:
    data = b"".join(f"user-{i},{i}\n".encode() for i in range(2, 40))
    with pytest.raises(BadInput) as refused:
        parse(b"user-0,0\nuser-1,1\n" + data, CONVERSION)
    assert [n for n, _ in refused.value.problems] == list(range(3, 3 + ol.MAX_REPORTED))
    text = str(refused.value)
    assert text.splitlines()[0] == "line 3: a conversion is 0 or 1, got 2"
    assert text.endswith(f"(stopped after {ol.MAX_REPORTED} bad lines)")


def test_empty_input_is_refused() -> None:
    for data in (b"", b"\n \n", b"key,value\n"):
        with pytest.raises(BadInput, match="no outcomes in the input"):
            parse(data)


def test_the_input_is_bounded_in_size_and_count() -> None:
    assert ol.MAX_INPUT_BYTES == 64 * 2**20 and ol.MAX_OUTCOMES == 1_000_000
    with pytest.raises(BadInput, match="larger than 64 MiB"):
        parse(b"u,1\n" * (ol.MAX_INPUT_BYTES // 4 + 1))
    assert len(parse(b"u,1\n" * 5, max_outcomes=5).outcomes) == 5
    with pytest.raises(BadInput, match="more than 5 outcomes"):
        parse(b"u,1\n" * 6, max_outcomes=5)


def test_batches_hold_the_count_limit() -> None:
    outcomes = [Outcome(1.0, version=1)] * 25_001
    ranges = batches(outcomes)
    assert ranges == [(0, 10_000), (10_000, 20_000), (20_000, 25_001)]


def test_batches_hold_the_byte_limit_and_keep_the_order() -> None:
    outcomes = [Outcome(float(i % 2), key=f"{i:06d}-" + "k" * 240) for i in range(3000)]
    ranges = batches(outcomes)
    assert len(ranges) > 2
    assert [start for start, _ in ranges[1:]] == [end for _, end in ranges[:-1]]
    assert (ranges[0][0], ranges[-1][1]) == (0, len(outcomes))
    for start, end in ranges:
        body = msgspec.json.encode({"outcomes": outcomes[start:end]})
        assert len(body) <= ol.BATCH_MAX_BYTES
        # full: one more outcome would not have fitted
        if end < len(outcomes):
            more = msgspec.json.encode({"outcomes": outcomes[start : end + 1]})
            assert len(more) > ol.BATCH_MAX_BYTES
    assert batches([]) == []


def test_the_limits_follow_the_api() -> None:
    """The CLI does not import the registry (scipy is slow to load): its limits are pinned
    to the API's Structs here."""
    feedback = msgspec.inspect.type_info(Feedback)
    assert isinstance(feedback, msgspec.inspect.StructType)
    outcomes = feedback.fields[0].type
    assert isinstance(outcomes, msgspec.inspect.ListType)
    assert outcomes.max_length == ol.BATCH_MAX_OUTCOMES
    item = outcomes.item_type
    assert isinstance(item, msgspec.inspect.StructType)
    fields = {f.name: f.type for f in item.fields}
    key = fields["key"]
    assert isinstance(key, msgspec.inspect.UnionType)
    text = [t for t in key.types if isinstance(t, msgspec.inspect.StrType)]
    assert [(t.min_length, t.max_length) for t in text] == [(1, ol.KEY_MAX_LENGTH)]
    assert set(fields) == {f.name for f in msgspec.structs.fields(Outcome)}


def test_json_lines_may_carry_a_covariate_and_it_reaches_the_api() -> None:
    parsed = parse(b'{"key": "u", "value": 1, "covariate": 3.5}\n{"key": "v", "value": 0}\n')
    assert parsed.outcomes == [Outcome(1.0, key="u", covariate=3.5), Outcome(0.0, key="v")]
    body = msgspec.json.encode({"outcomes": parsed.outcomes})
    assert b'"covariate"' in body and body.count(b"covariate") == 1  # left out when absent
    sent = msgspec.json.decode(body, type=Feedback)
    assert [o.covariate for o in sent.outcomes] == [3.5, None]
    [(line, why)] = problems(b'{"key": "u", "value": 1, "covariate": 1e999}\n')
    assert line == 1 and "`$.covariate`" in why


def test_csv_with_a_covariate_column() -> None:
    parsed = parse(b"key,value,covariate\nuser-7,1,3.5\nuser-8,0,-2\n")
    assert parsed.outcomes == [
        Outcome(1.0, key="user-7", covariate=3.5),
        Outcome(0.0, key="user-8", covariate=-2.0),
    ]
    assert parse(b"version,value,covariate\n2,0.5,1\n").outcomes == [
        Outcome(0.5, version=2, covariate=1.0)
    ]
    assert problems(b"key,value,covariate\nuser-7,1\nuser-8,1,x\n") == [
        (2, "expected 3 fields (key,value,covariate), got 2"),
        (3, "covariate 'x' is not a number"),
    ]
    assert problems(b"key,value,weight\nuser-7,1,2\n")[0][0] == 1  # not a header: an outcome
