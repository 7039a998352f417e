"""Logging: one JSON object per line by default, readable text on a terminal; secrets never printed.

Every record's ``extra`` fields (``payment_link_id``, ``correlation_id``, ``account_id``, …) become keys
of the JSON line. A filter masks anything shaped like a Stripe secret or restricted key, a bearer
token, or one of the configured secret values, in the message and in every extra field, so a careless
log call cannot leak them.

A second filter, ``WorkContext``, adds the ids of the work in progress (``consumer.tracing.LOG_CONTEXT``,
set per message by the worker and per item by replay/reconcile: ``payment_link_id``, ``correlation_id``,
``event_id``, ``account_id``) and the current ``trace_id``, without overriding a field the call gave, so
every line about a request carries them even when written by code that does not know the request.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

from consumer import tracing

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
_PATTERNS = [
    re.compile(r"\b(sk|rk)_(test|live)_[A-Za-z0-9_]+"),
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"),
]
MASK = "[redacted]"


class Redactor(logging.Filter):
    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self._secrets = [s for s in secrets if len(s) >= 4]

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        text = _PATTERNS[0].sub(MASK, text)
        return _PATTERNS[1].sub(lambda m: m.group(1) + MASK, text)

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.redact(record.getMessage())
        record.args = None
        for key, value in list(vars(record).items()):
            if key not in _STANDARD and isinstance(value, str):
                setattr(record, key, self.redact(value))
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


class WorkContext(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        fields = vars(record)
        for key, value in tracing.LOG_CONTEXT.get().items():
            if value is not None and key not in fields:
                fields[key] = value
        if "trace_id" not in fields:
            current = tracing.trace_id()
            if current is not None:
                fields["trace_id"] = current
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update({k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")})
        if record.exc_text:
            line["exception"] = record.exc_text
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        extras = " ".join(f"{k}={v}" for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_"))
        moment = datetime.fromtimestamp(record.created, UTC).strftime("%H:%M:%S.%f")[:-3]
        text = f"{moment} {record.levelname:<7} {record.name}: {record.getMessage()}"
        text = f"{text}  {extras}" if extras else text
        return f"{text}\n{record.exc_text}" if record.exc_text else text


def configure(level: str = "INFO", fmt: str = "auto", secrets: list[str] | None = None) -> None:
    """Installs one stderr handler on the root logger (replacing earlier ones)."""
    handler = logging.StreamHandler(sys.stderr)
    use_text = fmt == "text" or (fmt == "auto" and sys.stderr.isatty())
    handler.setFormatter(TextFormatter() if use_text else JsonFormatter())
    handler.addFilter(WorkContext())
    handler.addFilter(Redactor(secrets or []))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # aiokafka logs every reconnect attempt at WARNING/ERROR; keep them, but not its INFO chatter.
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, root.level))
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # stripe-python logs two INFO lines per API call (request, response): paylink's own metrics and
    # per-saga log lines say the same, at a fraction of the cost.
    logging.getLogger("stripe").setLevel(logging.WARNING)
    # stripe-python logs every request at INFO, URLs included (customer search queries hold e-mails).
    logging.getLogger("stripe").setLevel(max(logging.WARNING, root.level))
