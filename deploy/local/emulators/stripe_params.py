"""Stripe's error shapes, form-encoded parameter parsing and parameter validation helpers.

Errors raised while *validating* parameters (missing/unknown/malformed parameters, bad timestamps,
metadata limits) are marked ``saved=False``: Stripe does not save them under the idempotency key
because the endpoint never started executing. Errors raised while executing (unknown ids, invalid
state transitions, limits that depend on stored objects) are saved and replayed, as Stripe does.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl

from .stripe_currencies import ISO_4217, invalid_currency_message

DOCS = "https://stripe.com/docs/error-codes/"
Params = dict[str, Any]


def keys(names: str) -> frozenset[str]:
    """The parameter names in a space-separated string."""
    return frozenset(names.split())


class StripeError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        type_: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        saved: bool = True,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type_, code, param
        self.saved = saved
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"type": self.type, "message": self.message}
        if self.code:
            error["code"] = self.code
            error["doc_url"] = DOCS + self.code.replace("_", "-")
        if self.param:
            error["param"] = self.param
        return {"error": error}


def invalid(message: str, param: str | None = None, code: str | None = None) -> StripeError:
    """A parameter validation error (400, not saved under the idempotency key)."""
    return StripeError(400, message, param=param, code=code, saved=False)


def missing(param: str) -> StripeError:
    return invalid(f"Missing required param: {param}.", param, "parameter_missing")


def no_such(kind: str, object_id: str, param: str | None = None) -> StripeError:
    return StripeError(404, f"No such {kind}: '{object_id}'", code="resource_missing", param=param)


def state_error(message: str, param: str | None = None, code: str | None = None) -> StripeError:
    """A 400 decided by stored state (saved under the idempotency key)."""
    return StripeError(400, message, param=param, code=code)


# -- form decoding -----------------------------------------------------------------------------
_KEY = re.compile(r"([^\[\]]+)|\[([^\[\]]*)\]")


def parse_form(raw: str) -> Params:
    """Decode Stripe's form encoding into nested dicts: ``a[b][0][c]=1`` -> ``{"a": {"b": {"0": {...}}}}``.

    Lists stay dicts keyed by index strings (``a[]`` appends the next index); :func:`as_list` turns
    them into lists where a list is expected, so digit metadata keys are left alone.
    """
    result: Params = {}
    for key, value in parse_qsl(raw, keep_blank_values=True):
        parts = [m.group(1) if m.group(1) is not None else m.group(2) for m in _KEY.finditer(key)]
        if not parts:
            continue
        node = result
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if part == "" and i > 0:
                part = str(len(node))
            if last:
                node[part] = value
                break
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
    return result


def as_list(value: Any, param: str) -> list[Any]:
    if isinstance(value, list):
        return value
    if value == "":
        return []
    if not isinstance(value, dict) or not all(k.isdigit() for k in value):
        raise invalid(f"Invalid array: {param}", param)
    return [value[k] for k in sorted(value, key=int)]


# -- accessors ---------------------------------------------------------------------------------
def check_known(params: Params, allowed: frozenset[str] | set[str], prefix: str = "") -> None:
    for key in params:
        if key not in allowed and key != "expand":
            name = f"{prefix}[{key}]" if prefix else key
            raise invalid(f"Received unknown parameter: {name}", name, "parameter_unknown")


def get_str(params: Params, key: str, *, required: bool = False, max_len: int = 5000, prefix: str = "") -> str | None:
    name = f"{prefix}[{key}]" if prefix else key
    value = params.get(key)
    if value is None:
        if required:
            raise missing(name)
        return None
    if not isinstance(value, str):
        raise invalid(f"Invalid string: {name}", name)
    if required and value == "":
        raise invalid(
            f"You passed an empty string for '{name}'. We assume empty values are an attempt to unset a "
            f"parameter; however '{name}' cannot be unset. You should remove '{name}' from your request "
            "or supply a non-empty value.",
            name,
            "parameter_invalid_empty",
        )
    if len(value) > max_len:
        raise invalid(f"Invalid string: {_abridged(value)}; must be at most {max_len} characters", name)
    return value


def _abridged(value: str) -> str:
    """How Stripe quotes a long value in an error: its first and last ten characters."""
    return value if len(value) <= 23 else f"{value[:10]}...{value[-10:]}"


def get_int(
    params: Params, key: str, *, required: bool = False, minimum: int | None = None, prefix: str = ""
) -> int | None:
    name = f"{prefix}[{key}]" if prefix else key
    raw = get_str(params, key, required=required, prefix=prefix)
    if raw is None or raw == "":
        if required:
            raise missing(name)
        return None
    if not re.fullmatch(r"-?\d{1,18}", raw):
        raise invalid(f"Invalid integer: {raw}", name, "parameter_invalid_integer")
    value = int(raw)
    if minimum is not None and value < minimum:
        raise invalid(f"This value must be greater than or equal to {minimum}.", name)
    return value


def get_decimal(params: Params, key: str, prefix: str = "") -> float | None:
    name = f"{prefix}[{key}]" if prefix else key
    raw = get_str(params, key, prefix=prefix)
    if raw is None or raw == "":
        return None
    if not re.fullmatch(r"-?\d{1,18}(\.\d{1,12})?", raw):
        raise invalid(f"Invalid decimal: {raw}", name)
    return float(raw)


def get_bool(params: Params, key: str) -> bool | None:
    raw = get_str(params, key)
    if raw is None:
        return None
    if raw not in ("true", "false"):
        raise invalid(f"Invalid boolean: {raw}", key)
    return raw == "true"


def get_choice(params: Params, key: str, choices: tuple[str, ...]) -> str | None:
    value = get_str(params, key)
    if value is not None and value not in choices:
        raise invalid(f"Invalid {key}: must be one of {', '.join(choices)}", key)
    return value


def get_dict(params: Params, key: str) -> Params | None:
    value = params.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, dict):
        raise invalid(f"Invalid object: {key}", key)
    return value


def get_metadata(params: Params, key: str = "metadata", prefix: str = "") -> dict[str, str] | None:
    """``None`` when absent, ``{}`` for ``metadata=`` (unset all); validates Stripe's limits."""
    name = f"{prefix}[{key}]" if prefix else key
    value = params.get(key)
    if value is None:
        return None
    if value == "":
        return {}
    if not isinstance(value, dict) or any(not isinstance(v, str) for v in value.values()):
        raise invalid("Invalid metadata: must be a hash of string keys to string values", name)
    if len(value) > 50:
        raise invalid("Invalid metadata: metadata can have up to 50 keys, but you passed in more.", name)
    for k, v in value.items():
        if len(k) > 40:
            raise invalid(f"Invalid metadata: keys can be at most 40 characters long ({k!r}).", f"{name}[{k}]")
        if len(v) > 500:
            raise invalid(f"Invalid metadata: values can be at most 500 characters long ({k!r}).", f"{name}[{k}]")
    return dict(value)


def merge_metadata(current: dict[str, str], update: dict[str, str] | None) -> dict[str, str]:
    """Stripe's update semantics: empty value unsets a key, ``metadata=`` unsets all."""
    if update is None:
        return current
    if not update:
        return {}
    merged = dict(current)
    for k, v in update.items():
        if v == "":
            merged.pop(k, None)
        else:
            merged[k] = v
    if len(merged) > 50:
        raise invalid("Invalid metadata: metadata can have up to 50 keys, but you passed in more.", "metadata")
    return merged


def get_currency(params: Params, key: str = "currency", *, required: bool = False, prefix: str = "") -> str | None:
    value = get_str(params, key, required=required, prefix=prefix)
    if value is None:
        return None
    name = f"{prefix}[{key}]" if prefix else key
    if value.lower() not in ISO_4217:
        raise invalid(invalid_currency_message(value), name)
    return value.lower()


def list_args(params: Params) -> tuple[int, str | None, str | None]:
    limit = get_int(params, "limit")
    if limit is None:
        limit = 10
    if not 1 <= limit <= 100:
        raise invalid("Invalid limit: must be between 1 and 100", "limit")
    return limit, get_str(params, "starting_after"), get_str(params, "ending_before")
