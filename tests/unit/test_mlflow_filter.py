"""MLflow's search filter syntax: tokenizing, parsing every operator and quoting, errors, and
evaluation; order_by and page tokens."""

from __future__ import annotations

import pytest

from registry.errors import InvalidInput
from registry.web.mlflow.messages import page_offset, page_token
from registry.web.mlflow.search_filter import (
    Comparison,
    Filter,
    Kind,
    OrderBy,
    Target,
    exact_names,
    matches,
    name_prefix,
    parse_filter,
    parse_order_by,
    tokenize,
)

M, V = Target.MODELS, Target.VERSIONS


def one(text: str, target: Target = V) -> Comparison:
    (clause,) = parse_filter(text, target).clauses
    return clause


def test_tokenizer_kinds() -> None:
    kinds = [t.kind for t in tokenize("tags.`a b` != 'x' AND version_number IN (1, \"y\")")]
    assert kinds == [
        Kind.WORD,
        Kind.OP,
        Kind.STRING,
        Kind.WORD,
        Kind.WORD,
        Kind.WORD,
        Kind.LPAREN,
        Kind.NUMBER,
        Kind.COMMA,
        Kind.STRING,
        Kind.RPAREN,
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name = 'iris'", Comparison("attribute", "name", "=", "iris")),
        ("name != 'iris'", Comparison("attribute", "name", "!=", "iris")),
        ("name <> 'iris'", Comparison("attribute", "name", "!=", "iris")),
        ("name LIKE 'ir%'", Comparison("attribute", "name", "LIKE", "ir%")),
        ("name like 'ir%'", Comparison("attribute", "name", "LIKE", "ir%")),
        ("name ILIKE '%IS'", Comparison("attribute", "name", "ILIKE", "%IS")),
        ("name IN ('a', 'b')", Comparison("attribute", "name", "IN", ("a", "b"))),
        ("run_id NOT IN ('r')", Comparison("attribute", "run_id", "NOT IN", ("r",))),
        ("version_number = 3", Comparison("attribute", "version_number", "=", 3)),
        ("version_number >= '3'", Comparison("attribute", "version_number", ">=", 3)),
        ("version_number < 10", Comparison("attribute", "version_number", "<", 10)),
        ("source_path = 's3://b/m'", Comparison("attribute", "source_path", "=", "s3://b/m")),
        ('attribute.name = "x"', Comparison("attribute", "name", "=", "x")),
        ("`name` = 'x'", Comparison("attribute", "name", "=", "x")),
        ("tag.team = 'ml'", Comparison("tag", "team", "=", "ml")),
        ("tags.team != 'ml'", Comparison("tag", "team", "!=", "ml")),
        (
            "tags.`mlflow.prompt.is_prompt` != 'true'",
            Comparison("tag", "mlflow.prompt.is_prompt", "!=", "true"),
        ),
        ("tags.\"my key\" LIKE '%'", Comparison("tag", "my key", "LIKE", "%")),
        ("tags.`a``b` = 'c'", Comparison("tag", "a`b", "=", "c")),
        ("name = 'it''s'", Comparison("attribute", "name", "=", "it's")),
        ("name = 'it\\'s'", Comparison("attribute", "name", "=", "it's")),
    ],
)
def test_parses_each_operator_and_quoting(text: str, expected: Comparison) -> None:
    assert one(text) == expected


def test_and_joins_clauses_and_empty_is_everything() -> None:
    parsed = parse_filter("name = 'a' and tags.k = 'v' AND version_number > 1", V)
    assert [c.key for c in parsed.clauses] == ["name", "k", "version_number"]
    assert parse_filter(None, M) == Filter() == parse_filter("  ", M)


@pytest.mark.parametrize(
    ("text", "target"),
    [
        ("name", M),
        ("name =", M),
        ("name = 'a' OR name = 'b'", M),
        ("name = 'a' name = 'b'", M),
        ("name == 'a'", M),
        ("name = a", M),
        ("name = 'unterminated", M),
        ("owner = 'x'", M),
        ("run_id = 'x'", M),  # a model has no run_id
        ("metrics.acc > 1", V),
        ("name > 'a'", V),
        ("tags.k IN ('a')", V),
        ("tags.k > 'a'", V),
        ("source_path IN ('a')", V),
        ("version_number LIKE '1%'", V),
        ("version_number = 'one'", V),
        ("name = 3", V),
        ("name IN 'a'", V),
        ("name IN ('a' 'b')", V),
        ("name IN ('a', 2)", V),
        ("name IN ('a',", V),
        ("tags. = 'x'", V),
        ("name = 'a' AND", V),
        ("(name = 'a')", V),
        ("name = 'a' ; DROP TABLE models", V),
    ],
)
def test_bad_filters_are_invalid_parameter_values(text: str, target: Target) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_filter(text, target)
    assert caught.value.code == "INVALID_PARAMETER_VALUE" and caught.value.field == "filter"


def test_evaluation_follows_mlflow() -> None:
    attrs = {"name": "Iris_v2", "run_id": None, "version_number": 4}
    tags = {"team": "ml"}

    def ok(text: str) -> bool:
        return matches(parse_filter(text, V), attrs, tags)

    assert ok("name = 'Iris_v2'") and not ok("name = 'iris_v2'")
    assert ok("name LIKE 'Iris%'") and not ok("name LIKE 'iris%'")
    assert ok("name ILIKE 'iris%'") and ok("name LIKE 'Iris_v_'") and not ok("name LIKE 'Iris'")
    assert ok("name LIKE 'I%.%'") is False  # `.` is literal, not a regex wildcard
    assert ok("name IN ('x', 'Iris_v2')") and not ok("name NOT IN ('Iris_v2')")
    assert ok("version_number >= 4") and not ok("version_number > 4") and ok("version_number != 3")
    assert ok("tags.team = 'ml'") and not ok("tags.team != 'ml'")
    assert not ok("tags.missing != 'x'"), "a missing value never matches"
    assert not ok("run_id != 'x'"), "a missing value never matches"
    assert ok("tags.`mlflow.prompt.is_prompt` != 'true'"), "models are not prompts"
    assert ok("tags.`mlflow.prompt.is_prompt` = 'false'")
    assert ok("name LIKE 'Iris%' AND tags.team = 'ml'")
    assert not ok("name LIKE 'Iris%' AND tags.team = 'ai'")


def test_narrowing_hints() -> None:
    assert exact_names(parse_filter("tags.a = 'b' AND name = 'x'", M)) == ("x",)
    assert exact_names(parse_filter("name IN ('x', 'y')", M)) == ("x", "y")
    assert exact_names(parse_filter("name LIKE 'x'", M)) is None
    assert name_prefix(parse_filter("name LIKE 'abc%d'", M)) == "abc"
    assert name_prefix(parse_filter("name LIKE '%abc'", M)) is None
    assert name_prefix(parse_filter("name ILIKE 'abc%'", M)) is None  # case-insensitive


def test_order_by() -> None:
    assert parse_order_by(["name DESC", "timestamp"], M) == [
        OrderBy("name", False),
        OrderBy("last_updated_timestamp", True),
    ]
    assert parse_order_by(["version_number asc"], V) == [OrderBy("version_number", True)]
    assert parse_order_by(None, V) == []
    for bad, target in [("owner", M), ("version_number", M), ("name UP", M), ("a b c", V)]:
        with pytest.raises(InvalidInput):
            parse_order_by([bad], target)


def test_page_tokens_are_mlflows_offsets() -> None:
    assert page_offset(page_token(300)) == 300
    assert page_token(2) == "eyJvZmZzZXQiOiAyfQ=="  # base64 of {"offset": 2}, as MLflow writes
    assert page_offset(None) == 0 == page_offset("")
    for bad in ("not base64!", "e30=", page_token(-1), "eyJvZmZzZXQiOiAiYSJ9"):
        with pytest.raises(InvalidInput):
            page_offset(bad)
