"""The published JSON Schema of ``PaymentLinkRequested``: every rule of the model that JSON Schema can
state, stated; the rest named in the descriptions.

Pydantic derives the fields' types and bounds; this adds what it cannot see in validators:
- exactly one of ``due_date`` / ``days_until_due`` (a ``oneOf`` on the root);
- ``event_id``'s form, ``currency``'s list in any case, ``occurred_at`` with an offset and ``due_date``
  as ``YYYY-MM-DD`` (patterns, so a validator needs no format plug-in);
- ``metadata``'s limits (keys: count, length, no brackets, not reserved; values: length).
Left to descriptions: ``due_date`` after today and within five years (needs a clock), ``amount *
quantity`` ≤ 99,999,999 (a product), a real calendar date and time, and integers written without a
fraction (JSON Schema counts ``1.0`` as an integer; paylink does not). ``tests/unit/test_doors.py``
feeds the same events to this schema, ``paylink publish`` and the worker's intake.
"""

from __future__ import annotations

from typing import Any

from domain.currencies import CURRENCIES
from domain.events import (
    MAX_AMOUNT,
    MAX_METADATA_KEY_CHARS,
    MAX_METADATA_KEYS,
    MAX_METADATA_VALUE_CHARS,
    RESERVED_METADATA_KEYS,
    UUID_PATTERN,
    PaymentLinkRequested,
)
from domain.intake import MAX_DUE_DATE_DAYS_AHEAD

DATE_PATTERN = "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
# RFC 3339 with a mandatory offset: the model takes only aware date-times.
DATE_TIME_PATTERN = "^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})$"
METADATA_KEY_PATTERN = "^[^\\[\\]]*$"


def any_case(code: str) -> str:
    return "".join(f"[{letter.upper()}{letter}]" for letter in code)


CURRENCY_PATTERN = "^(" + "|".join(any_case(code) for code in sorted(CURRENCIES)) + ")$"


def request_schema() -> dict[str, Any]:
    """Pydantic's schema of the model, with the rules above."""
    generated = PaymentLinkRequested.model_json_schema(mode="validation")
    schema = {**generated, "properties": dict(generated["properties"])}
    fields = schema["properties"]
    fields["event_id"] = {**fields["event_id"], "pattern": UUID_PATTERN}
    fields["currency"] = {**fields["currency"], "pattern": CURRENCY_PATTERN}
    fields["occurred_at"] = {**fields["occurred_at"], "pattern": DATE_TIME_PATTERN}
    fields["due_date"] = _with_string_branch(
        fields["due_date"],
        {"pattern": DATE_PATTERN},
        f"a real date after today (UTC) and at most {MAX_DUE_DATE_DAYS_AHEAD} days ahead: checked by "
        "paylink (needs a clock)",
    )
    fields["metadata"] = {
        **fields["metadata"],
        "maxProperties": MAX_METADATA_KEYS,
        "propertyNames": {
            "minLength": 1,
            "maxLength": MAX_METADATA_KEY_CHARS,
            "pattern": METADATA_KEY_PATTERN,
            "not": {"enum": sorted(RESERVED_METADATA_KEYS)},
        },
        "additionalProperties": {"type": "string", "maxLength": MAX_METADATA_VALUE_CHARS},
    }
    fields["line_items"] = {
        **fields["line_items"],
        "description": f"each line's amount * quantity must be at most {MAX_AMOUNT} (checked by paylink)",
    }
    schema["oneOf"] = [
        {"required": ["due_date"], "properties": {"due_date": {"type": "string"}}},
        {"required": ["days_until_due"], "properties": {"days_until_due": {"type": "integer"}}},
    ]
    schema["description"] = (
        f"{generated.get('description', '')} Exactly one of due_date and days_until_due. Integers are "
        "written without a fraction (3, not 3.0)."
    ).strip()
    return schema


def _with_string_branch(field: dict[str, Any], extra: dict[str, Any], description: str) -> dict[str, Any]:
    branches = [{**branch, **extra} if branch.get("type") == "string" else branch for branch in field["anyOf"]]
    return {**field, "anyOf": branches, "description": description}
