"""The one way paylink makes a MongoDB client (``new_client``), with PyMongo kept from re-clearing its own
connection pool on "connection pool paused" errors.

After a network error PyMongo marks the server Unknown, clears and *pauses* its pool, and lets its monitor
mark it ready again once a ``hello`` succeeds. A checkout from the paused pool fails at once with
``AutoReconnect("… connection pool paused")``. The CMAP specification says that error "MUST NOT be an error
that marks the SDAM state unknown", but PyMongo (4.20) hands it to the topology's error handler like any
network error, with the pool generation read *before* the checkout. Under concurrency the handler runs after
the monitor has just marked the pool ready (both wait for the topology lock), finds the generation current,
and clears and pauses the pool again. With a hundred sagas retrying against a restarted FerretDB this looped
for minutes (issue 17, ``ferretdb_restart``: "connection pool paused" for 6.5 minutes while the store
answered); with few operations in flight it ends by chance after a few heartbeats.

``new_client`` installs ``ignore_paused_pool_errors``, which makes the topology's handler skip exactly those
errors (they say nothing about the server: the pool refused the checkout before talking to it), as the
specification asks. Everything else is handled as before. The wrapper checks the driver still has the
method it wraps, so a PyMongo upgrade that renames it fails loudly at start
(``tests/integration/test_mongo_client.py`` proves the loop is gone on the pinned version).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.asynchronous.topology import Topology
from pymongo.errors import AutoReconnect

PAUSED = "connection pool paused"
# Far above any single operation of paylink's (the relay's and purges' scans included) on a loaded store.
SOCKET_TIMEOUT_MS = 30_000
_MARK = "_paylink_ignores_paused_pool_errors"

Document = dict[str, Any]
Handler = Callable[[Topology, Any, Any], Awaitable[None]]


def is_paused_pool_error(error: BaseException | None) -> bool:
    """The error a checkout from a paused pool raises (``pool_shared._raise_if_not_ready``)."""
    return isinstance(error, AutoReconnect) and PAUSED in str(error)


def ignore_paused_pool_errors() -> None:
    """Installs the fix once per process (idempotent)."""
    original: Handler | None = getattr(Topology, "_handle_error", None)
    if original is None:
        raise RuntimeError("pymongo's AsyncTopology has no _handle_error: review adapters/mongo/pool_paused.py")
    if getattr(original, _MARK, False):
        return

    async def handle_error(self: Topology, address: Any, err_ctx: Any) -> None:
        if is_paused_pool_error(getattr(err_ctx, "error", None)):
            return  # the pool refused the checkout: nothing learnt about the server
        await original(self, address, err_ctx)

    setattr(handle_error, _MARK, True)
    Topology._handle_error = handle_error  # type: ignore[method-assign]


def new_client(uri: str, **options: Any) -> AsyncMongoClient[Document]:
    """An ``AsyncMongoClient`` for ``uri`` (``options`` as PyMongo takes them), with the paused-pool fix on.

    Operations time out after ``SOCKET_TIMEOUT_MS`` unless the URI sets ``socketTimeoutMS``: PyMongo waits
    forever by default, and a connection that hangs without closing (a half-open socket, a partition that
    drops packets) would hold a saga, and the worker's offsets behind it, for good. A timeout is a
    ``NetworkTimeout``, retryable like any store failure (``adapters.mongo.errors``).
    """
    ignore_paused_pool_errors()
    if "sockettimeoutms" not in uri.lower():
        options.setdefault("socketTimeoutMS", SOCKET_TIMEOUT_MS)
    return AsyncMongoClient(uri, **options)
