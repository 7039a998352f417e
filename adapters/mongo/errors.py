"""Translates the driver's transient failures into the domain's ``RetryableError``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from pymongo.errors import AutoReconnect, ConnectionFailure, ExecutionTimeout, NetworkTimeout, NotPrimaryError

from domain.errors import RetryableError

TRANSIENT = (AutoReconnect, ConnectionFailure, NetworkTimeout, NotPrimaryError, ExecutionTimeout)


@contextmanager
def store_errors(operation: str) -> Iterator[None]:
    """Raises ``RetryableError`` for failures that a retry can cure (reconnects, elections, timeouts)."""
    try:
        yield
    except TRANSIENT as error:
        raise RetryableError(
            # The driver's message says which failure (pool cleared, timeout, closed): host:port, no credentials.
            "internal_error",
            f"MongoDB unavailable during {operation}: {type(error).__name__}: {error}"[:300],
        ) from error
