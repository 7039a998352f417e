"""What every ``paylink`` command shares: exit codes, quiet logging, tables and the progress line."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

from consumer.runtime import logs
from consumer.runtime.settings import Settings

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3


def quiet_logging(settings: Settings) -> None:
    """Commands log only warnings and errors (stderr), through the same secret-masking filter."""
    secrets = [settings.stripe_api_key.get_secret_value(), settings.shortener_token.get_secret_value()]
    logs.configure("WARNING", settings.log_format, secrets=secrets)
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # connection errors are reported by the command


def command_logging(settings: Settings) -> None:
    """Commands that change state (replay, cancel, reconcile) log like the worker: ``PAYLINK_LOG_LEVEL``
    and ``PAYLINK_LOG_FORMAT``, every line with the ids of the link it is about (issue 14)."""
    secrets = [settings.stripe_api_key.get_secret_value(), settings.shortener_token.get_secret_value()]
    logs.configure(settings.log_level, settings.log_format, secrets=secrets)
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # connection errors are reported by the command


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]], out: TextIO | None = None) -> None:
    out = out or sys.stdout
    cells = [[str(value) if value is not None else "-" for value in row] for row in rows]
    widths = [max([len(h), *(len(row[i]) for row in cells)]) for i, h in enumerate(headers)]
    for row in [list(headers), *cells]:
        print("  ".join(value.ljust(width) for value, width in zip(row, widths, strict=True)).rstrip(), file=out)


class Progress:
    """A ``\\r``-redrawn progress bar on stderr when it is a terminal; result lines go to stdout."""

    WIDTH = 30

    def __init__(self, total: int, label: str, stream: TextIO | None = None, out: TextIO | None = None) -> None:
        self.total, self.done, self._label = total, 0, label
        self._stream = stream or sys.stderr
        self._out = out or sys.stdout
        self._tty = self._stream.isatty()
        self._draw()

    def line(self, text: str) -> None:
        if self._tty:
            self._stream.write("\r\x1b[K")
            self._stream.flush()
        print(text, file=self._out, flush=True)
        self._draw()

    def advance(self) -> None:
        self.done += 1
        self._draw()

    def close(self) -> None:
        if self._tty:
            self._stream.write("\r\x1b[K")
            self._stream.flush()

    def _draw(self) -> None:
        if not self._tty or not self.total:
            return
        filled = self.WIDTH * self.done // self.total
        bar = "#" * filled + "." * (self.WIDTH - filled)
        self._stream.write(f"\r{self._label} [{bar}] {self.done}/{self.total}")
        self._stream.flush()


def iso(moment: Any) -> str:
    """A UTC timestamp with milliseconds and a ``Z``; usable as ``json.dumps(default=iso)``."""
    if isinstance(moment, datetime):
        return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    raise TypeError(f"not JSON serialisable: {type(moment).__name__}")
