"""Value types of ``paylink``'s command-line arguments: each parses one flag's text or raises
``argparse.ArgumentTypeError`` with the expected form, which argparse turns into a usage error (exit 2)."""

from __future__ import annotations

import argparse
import re
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

_RELATIVE = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def duration(text: str) -> timedelta:
    """``90s``, ``15m``, ``2h``, ``7d``."""
    match = _RELATIVE.match(text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"not a duration (e.g. 15m, 2h, 7d): {text!r}")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def moment(text: str) -> datetime:
    """An ISO date (midnight UTC), an ISO date-time (UTC unless it names an offset) or ``2h`` (ago)."""
    text = text.strip()
    if _RELATIVE.match(text):
        return datetime.now(UTC) - duration(text)
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), time(0), tzinfo=UTC)
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO date/time or a duration like 2h: {text!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def price_item(text: str) -> dict[str, Any]:
    """``price_id[:quantity]``."""
    price_id, _, quantity = text.partition(":")
    if not price_id or (quantity and not quantity.isdigit()):
        raise argparse.ArgumentTypeError(f"expected price_id[:quantity], got {text!r}")
    return {"price_id": price_id, "quantity": int(quantity or 1)}


def amount_item(text: str) -> dict[str, Any]:
    """``description:amount[:quantity]``; amount in minor units; the description may hold colons."""
    parts = text.rsplit(":", 2)
    if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
        return {"description": parts[0], "amount": int(parts[1]), "quantity": int(parts[2])}
    description, _, amount = text.rpartition(":")
    if not description or not amount.isdigit():
        raise argparse.ArgumentTypeError(f"expected description:amount[:quantity], got {text!r}")
    return {"description": description, "amount": int(amount), "quantity": 1}


def seconds(text: str) -> float:
    """A non-negative number of seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"seconds must be 0 or more: {text!r}")
    return value


def metadata_pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    return key, value
