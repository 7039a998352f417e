"""A subset of Stripe's Search Query Language, enough for customer search.

Supported: ``field:"value"`` (exact, case-insensitive for ``email``/``name``), ``field~"value"``
(substring, at least 3 characters), ``created>1700000000`` (also ``<``, ``>=``, ``<=``, ``:``),
``metadata["key"]:"value"``, negation with a leading ``-``, and clauses joined by ``AND`` or by ``OR``
(mixing the two is rejected, as Stripe does). Values are double-quoted strings in which ``\\"`` and
``\\\\`` are the only escapes. Anything else raises :class:`QueryError` (-> 400 on param ``query``).
"""

from __future__ import annotations

from dataclasses import dataclass

STRING_FIELDS = {"email", "name", "phone", "description"}
NUMBER_FIELDS = {"created"}


class QueryError(ValueError):
    pass


@dataclass(frozen=True)
class Clause:
    field: str
    op: str
    value: str | int
    negated: bool = False
    meta_key: str | None = None


@dataclass(frozen=True)
class Query:
    combinator: str  # "AND" or "OR"
    clauses: tuple[Clause, ...]


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
        elif c == '"':
            i += 1
            buf: list[str] = []
            while True:
                if i >= n:
                    raise QueryError("unterminated string (missing closing '\"')")
                c = text[i]
                if c == "\\":
                    if i + 1 >= n or text[i + 1] not in '"\\':
                        raise QueryError(f'invalid escape sequence at position {i}: only \\" and \\\\ are allowed')
                    buf.append(text[i + 1])
                    i += 2
                elif c == '"':
                    i += 1
                    break
                else:
                    buf.append(c)
                    i += 1
            out.append(("str", "".join(buf)))
        elif text.startswith((">=", "<="), i):
            out.append(("op", text[i : i + 2]))
            i += 2
        elif c in ":~<>":
            out.append(("op", c))
            i += 1
        elif c in "[]-":
            out.append((c, c))
            i += 1
        elif c.isalnum() or c == "_":
            j = i
            while j < n and (text[j].isalnum() or text[j] in "_."):
                j += 1
            word = text[i:j]
            out.append(("num" if word.isdigit() else "word", word))
            i = j
        else:
            raise QueryError(f"unexpected character {c!r} at position {i}")
    return out


def parse_query(text: str) -> Query:
    tokens = _tokens(text)
    if not tokens:
        raise QueryError("the query is empty")
    pos = 0

    def take(kind: str, what: str) -> str:
        nonlocal pos
        if pos >= len(tokens) or tokens[pos][0] != kind:
            found = tokens[pos][1] if pos < len(tokens) else "end of query"
            raise QueryError(f"expected {what}, found {found!r}")
        pos += 1
        return tokens[pos - 1][1]

    clauses: list[Clause] = []
    combinators: set[str] = set()
    while True:
        negated = False
        if pos < len(tokens) and tokens[pos][0] == "-":
            negated, pos = True, pos + 1
        field = take("word", "a field name")
        meta_key = None
        if field == "metadata":
            take("[", "'[' after metadata")
            meta_key = take("str", "a quoted metadata key")
            take("]", "']'")
        elif field not in STRING_FIELDS | NUMBER_FIELDS:
            raise QueryError(f"field {field!r} is not supported for customer search")
        op = take("op", "an operator (':', '~', '<', '>', '<=', '>=')")
        value: str | int
        if field in NUMBER_FIELDS:
            value = int(take("num", "an integer timestamp"))
            if op == "~":
                raise QueryError(f"operator '~' is not supported on {field!r}")
        else:
            value = take("str", "a double-quoted value")
            if op not in (":", "~"):
                raise QueryError(f"operator {op!r} is not supported on {field!r}")
            if op == "~" and len(value) < 3:
                raise QueryError("substring matching ('~') needs at least 3 characters")
        clauses.append(Clause(field, op, value, negated, meta_key))
        if pos == len(tokens):
            break
        word = take("word", "AND or OR")
        if word not in ("AND", "OR"):
            raise QueryError(f"expected AND or OR, found {word!r}")
        combinators.add(word)
        if len(combinators) > 1:
            raise QueryError("AND and OR cannot be combined in the same query")
    if len(clauses) > 10:
        raise QueryError("a query can have at most 10 clauses")
    return Query(combinators.pop() if combinators else "AND", tuple(clauses))


def clause_matches(clause: Clause, obj: dict[str, object]) -> bool:
    if clause.meta_key is not None:
        metadata = obj.get("metadata")
        actual: object = metadata.get(clause.meta_key) if isinstance(metadata, dict) else None
    else:
        actual = obj.get(clause.field)
    result: bool
    if isinstance(clause.value, int):
        if not isinstance(actual, int):
            result = False
        else:
            result = {
                ":": actual == clause.value,
                "<": actual < clause.value,
                ">": actual > clause.value,
                "<=": actual <= clause.value,
                ">=": actual >= clause.value,
            }[clause.op]
    elif not isinstance(actual, str):
        result = False
    else:
        folded = clause.field in ("email", "name") and clause.meta_key is None
        a, v = (actual.lower(), clause.value.lower()) if folded or clause.op == "~" else (actual, clause.value)
        result = a == v if clause.op == ":" else v in a
    return result != clause.negated
