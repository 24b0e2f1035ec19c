"""MLflow's search filter and order_by syntax for the model registry. Pure.

    filter      := comparison (AND comparison)*
    comparison  := identifier operator value
    identifier  := [("attribute" | "tag" | "tags") "."] key      key: word, `backticked` or "quoted"
    operator    := = | != | < | <= | > | >= | LIKE | ILIKE | IN | NOT IN
    value       := 'string' | "string" | integer | "(" value ("," value)* ")"

`tokenize` cuts the text into Tokens, `parse_filter` builds a Filter of Comparisons (checking keys,
operators and value types the way MLflow does), `matches` evaluates it against one entity.
Anything that cannot be parsed raises InvalidInput (MLflow's INVALID_PARAMETER_VALUE).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Final, Literal

import msgspec

from registry.errors import InvalidInput
from registry.ports import Comparison, Filter, OrderBy

IS_PROMPT_TAG: Final = "mlflow.prompt.is_prompt"
STRING_OPS: Final = frozenset({"=", "!=", "LIKE", "ILIKE", "IN", "NOT IN"})
TAG_OPS: Final = frozenset({"=", "!=", "LIKE", "ILIKE"})
NUMBER_OPS: Final = frozenset({"=", "!=", "<", "<=", ">", ">="})


class Target(enum.StrEnum):
    MODELS = "models"
    VERSIONS = "versions"


#: attribute -> its kind ("string" or "number"), per search target
ATTRIBUTES: Final[dict[Target, dict[str, str]]] = {
    Target.MODELS: {"name": "string"},
    Target.VERSIONS: {
        "name": "string",
        "run_id": "string",
        "source_path": "string",
        "version_number": "number",
    },
}
LIST_KEYS: Final = {Target.MODELS: {"name"}, Target.VERSIONS: {"name", "run_id"}}
ORDER_KEYS: Final[dict[Target, frozenset[str]]] = {
    Target.MODELS: frozenset({"name", "creation_timestamp", "last_updated_timestamp"}),
    Target.VERSIONS: frozenset(
        {"name", "version_number", "creation_timestamp", "last_updated_timestamp"}
    ),
}
_ORDER_ALIASES: Final = {"timestamp": "last_updated_timestamp"}  # as MLflow's store


class Kind(enum.StrEnum):
    WORD = "word"  # identifier or keyword, dots included: tags.owner
    QUOTED_KEY = "quoted_key"  # `backticked`
    STRING = "string"  # 'single' or "double" quoted
    NUMBER = "number"
    OP = "op"  # = != < <= > >=
    LPAREN = "("
    RPAREN = ")"
    COMMA = ","


class Token(msgspec.Struct, frozen=True):
    kind: Kind
    text: str
    at: int


_TOKEN_RE: Final = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<quoted_key>`(?:[^`]|``)*`)
  | (?P<string>'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.|"")*")
  | (?P<number>-?\d+(?![A-Za-z_]))
  | (?P<op>!=|<>|<=|>=|=|<|>)
  | (?P<lparen>\()
  | (?P<rparen>\))
  | (?P<comma>,)
  | (?P<word>[A-Za-z_]\w*(?:\.(?:\w+|`(?:[^`]|``)*`|"(?:[^"\\]|\\.)*"))*)
    """,
    re.VERBOSE,
)
_KINDS: Final = {
    "quoted_key": Kind.QUOTED_KEY,
    "string": Kind.STRING,
    "number": Kind.NUMBER,
    "op": Kind.OP,
    "lparen": Kind.LPAREN,
    "rparen": Kind.RPAREN,
    "comma": Kind.COMMA,
    "word": Kind.WORD,
}


def _bad(message: str) -> InvalidInput:
    return InvalidInput(message, field="filter")


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    at = 0
    while at < len(text):
        m = _TOKEN_RE.match(text, at)
        if m is None:
            raise _bad(f"cannot parse the filter at position {at}: {text[at : at + 20]!r}")
        group = m.lastgroup
        assert group is not None
        if group != "space":
            tokens.append(Token(_KINDS[group], m.group(), at))
        at = m.end()
    return tokens


def _unquote(text: str) -> str:
    quote = text[0]
    body = text[1:-1]
    if quote == "`":
        return body.replace("``", "`")
    body = body.replace(quote * 2, quote)
    return re.sub(r"\\(.)", r"\1", body)


def _identifier(token: Token, target: Target) -> tuple[Literal["attribute", "tag"], str]:
    if token.kind == Kind.QUOTED_KEY:
        entity_name, key = "attribute", _unquote(token.text)
    elif token.kind == Kind.WORD:
        entity_name, dot, rest = token.text.partition(".")
        if not dot:
            entity_name, key = "attribute", token.text
        else:
            key = _unquote(rest) if rest[:1] in ("`", '"') else rest
    else:
        raise _bad(f"expected a key at position {token.at}, found {token.text!r}")
    if entity_name in ("tag", "tags"):
        if not key:
            raise _bad("a tag filter needs a key: tags.<key>")
        return "tag", key
    if entity_name not in ("attribute", "attributes"):
        raise _bad(
            f"invalid entity type {entity_name!r}; valid entity types are attribute, tag, tags"
        )
    if key not in ATTRIBUTES[target]:
        valid = ", ".join(sorted(ATTRIBUTES[target]))
        raise _bad(f"invalid attribute key {key!r}; valid keys are {valid}")
    return "attribute", key


class _Parser:
    def __init__(self, tokens: list[Token], target: Target) -> None:
        self.tokens, self.target, self.i = tokens, target, 0

    def peek(self) -> Token | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, what: str) -> Token:
        token = self.peek()
        if token is None:
            raise _bad(f"the filter ends where {what} was expected")
        self.i += 1
        return token

    def keyword(self, token: Token | None, *words: str) -> bool:
        return token is not None and token.kind == Kind.WORD and token.text.upper() in words

    def operator(self) -> str:
        token = self.take("an operator")
        if token.kind == Kind.OP:
            return "!=" if token.text == "<>" else token.text
        if self.keyword(token, "LIKE", "ILIKE", "IN"):
            return token.text.upper()
        if self.keyword(token, "NOT") and self.keyword(self.peek(), "IN"):
            self.i += 1
            return "NOT IN"
        raise _bad(f"expected an operator at position {token.at}, found {token.text!r}")

    def scalar(self) -> str | int:
        token = self.take("a value")
        if token.kind == Kind.STRING:
            return _unquote(token.text)
        if token.kind == Kind.NUMBER:
            return int(token.text)
        raise _bad(f"expected a quoted value at position {token.at}, found {token.text!r}")

    def values(self) -> tuple[str, ...]:
        opening = self.take("(")
        if opening.kind != Kind.LPAREN:
            raise _bad(f"IN needs a list like ('a', 'b') at position {opening.at}")
        out: list[str] = []
        while True:
            value = self.take("a quoted value")
            if value.kind != Kind.STRING:
                raise _bad(f"IN lists hold quoted strings; found {value.text!r}")
            out.append(_unquote(value.text))
            sep = self.take(") or ,")
            if sep.kind == Kind.RPAREN:
                return tuple(out)
            if sep.kind != Kind.COMMA:
                raise _bad(f"expected , or ) at position {sep.at}, found {sep.text!r}")

    def comparison(self) -> Comparison:
        entity, key = _identifier(self.take("a key"), self.target)
        op = self.operator()
        kind = "tag" if entity == "tag" else ATTRIBUTES[self.target][key]
        allowed = {"tag": TAG_OPS, "string": STRING_OPS, "number": NUMBER_OPS}[kind]
        if op not in allowed:
            raise _bad(f"invalid comparator {op!r} for {key!r}; use one of {sorted(allowed)}")
        value: str | int | tuple[str, ...]
        if op in ("IN", "NOT IN"):
            if key not in LIST_KEYS[self.target]:
                raise _bad(f"{op} is not supported for {key!r}")
            value = self.values()
        else:
            value = self.scalar()
            if kind == "number":
                value = _integer(value, key)
            elif not isinstance(value, str):
                raise _bad(f"expected a quoted string value for {key!r}, got {value}")
        return Comparison(entity=entity, key=key, op=op, value=value)

    def parse(self) -> Filter:
        clauses = [self.comparison()]
        while (token := self.peek()) is not None:
            if not self.keyword(token, "AND"):
                raise _bad(
                    f"expected AND at position {token.at}, found {token.text!r}"
                    " (only AND joins conditions)"
                )
            self.i += 1
            clauses.append(self.comparison())
        return Filter(tuple(clauses))


def _integer(value: str | int, key: str) -> int:
    if isinstance(value, int):
        return value
    if re.fullmatch(r"-?\d+", value.strip()):
        return int(value)
    raise _bad(f"{key!r} compares with an integer, got {value!r}")


def parse_filter(text: str | None, target: Target) -> Filter:
    if text is None or not text.strip():
        return Filter()
    return _Parser(tokenize(text), target).parse()


# --- evaluation -------------------------------------------------------------------------------


@lru_cache(maxsize=256)
def _like(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    parts = ("." if c == "_" else ".*" if c == "%" else re.escape(c) for c in pattern)
    return re.compile("".join(parts), re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def _compare(op: str, left: str | int, right: str | int | tuple[str, ...]) -> bool:
    if isinstance(right, tuple):
        return (left in right) == (op == "IN")
    if op == "LIKE" or op == "ILIKE":
        return _like(str(right), op == "ILIKE").fullmatch(str(left)) is not None
    if op == "=":
        return left == right
    if op == "!=":
        return left != right
    assert isinstance(left, int) and isinstance(right, int)
    return {"<": left < right, "<=": left <= right, ">": left > right, ">=": left >= right}[op]


def matches(
    where: Filter, attributes: Mapping[str, str | int | None], tags: Mapping[str, str]
) -> bool:
    """Whether an entity with these attributes and tags passes every clause (MLflow's rules: a
    missing value never matches, except the prompt marker tag, which reads as `false`)."""
    for c in where.clauses:
        left = attributes.get(c.key) if c.entity == "attribute" else tags.get(c.key)
        if left is None and c.entity == "tag" and c.key == IS_PROMPT_TAG:
            left = "false"
        if left is None or not _compare(c.op, left, c.value):
            return False
    return True


def exact_names(where: Filter) -> tuple[str, ...] | None:
    """The only model names the filter can match (from `name = ` or `name IN`), if it says."""
    for c in where.clauses:
        if c.entity == "attribute" and c.key == "name":
            if c.op == "=" and isinstance(c.value, str):
                return (c.value,)
            if c.op == "IN" and isinstance(c.value, tuple):
                return c.value
    return None


def name_prefix(where: Filter) -> str | None:
    """A literal prefix every matching name starts with (from `name LIKE 'abc%'`), if any."""
    for c in where.clauses:
        if c.entity == "attribute" and c.key == "name" and c.op == "LIKE":
            prefix = re.split(r"[%_]", str(c.value), maxsplit=1)[0]
            if prefix:
                return prefix
    return None


# --- order_by ---------------------------------------------------------------------------------


def parse_order_by(items: list[str] | None, target: Target) -> list[OrderBy]:
    out: list[OrderBy] = []
    for item in items or []:
        words = item.split()
        if not words or len(words) > 2:
            raise InvalidInput(f"invalid order_by clause {item!r}", field="order_by")
        key = words[0].strip("`")
        key = key.split(".", 1)[1] if key.startswith("attribute.") else key
        key = _ORDER_ALIASES.get(key, key)
        if key not in ORDER_KEYS[target]:
            valid = ", ".join(sorted(ORDER_KEYS[target]))
            raise InvalidInput(
                f"invalid order_by key {words[0]!r}; valid keys are {valid}", field="order_by"
            )
        direction = words[1].upper() if len(words) == 2 else "ASC"
        if direction not in ("ASC", "DESC"):
            raise InvalidInput(
                f"invalid order_by direction {words[1]!r}: use ASC or DESC", field="order_by"
            )
        out.append(OrderBy(key, direction == "ASC"))
    return out
