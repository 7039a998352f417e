"""The MongoDB client paylink makes (``adapters.mongo.client.new_client``) against the real store.

Regression for issue 17's ``ferretdb_restart`` failure: after a store restart the worker's pool stayed
"paused" for 6.5 minutes. A checkout from a paused pool fails with "connection pool paused"; PyMongo handed
that error to its topology, which — when it ran just after the monitor had marked the pool ready again —
cleared and paused the pool once more, in a loop while sagas kept retrying. The race is reproduced here
step by step on a real client: the pool is ready, then the error a checkout raised while it was paused
arrives with the pool's current generation.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from pymongo import AsyncMongoClient
from pymongo.errors import AutoReconnect
from pymongo.topology_shared import _ErrorContext
from pymongo.typings import _Address

from adapters.mongo.client import SOCKET_TIMEOUT_MS, new_client

Document = dict[str, Any]


@pytest.fixture
async def client(mongodb_uri: str) -> AsyncIterator[AsyncMongoClient[Document]]:
    client = new_client(mongodb_uri, serverSelectionTimeoutMS=5000)
    await client.admin.command("ping")
    yield client
    await client.close()


def _server(client: AsyncMongoClient[Document]) -> Any:
    topology = client._topology
    assert topology is not None
    (server,) = topology._servers.values()
    return server


async def _arrives(client: AsyncMongoClient[Document], error: Exception) -> None:
    """``error`` reaches the topology's handler as the failure of an operation begun at this generation."""
    server = _server(client)
    address: _Address = server.description.address
    context = _ErrorContext(error, 0, server.pool.gen.get_overall(), False, None)
    assert client._topology is not None
    await client._topology.handle_error(address, context)


async def test_a_paused_pool_error_arriving_after_recovery_leaves_the_pool_ready(
    client: AsyncMongoClient[Document],
) -> None:
    server = _server(client)
    generation = server.pool.gen.get_overall()
    address = "{}:{}".format(*server.description.address)

    await _arrives(client, AutoReconnect(f"{address}: connection pool paused (configured timeouts: …)"))

    assert server.pool.gen.get_overall() == generation, "the pool was cleared by its own paused-pool error"
    assert server.description.is_server_type_known
    await client.admin.command("ping")  # usable at once: no heartbeat needed


async def test_a_real_network_error_still_clears_the_pool(client: AsyncMongoClient[Document]) -> None:
    """The fix skips only the pool's own refusals: a connection the server closed still marks it Unknown."""
    server = _server(client)
    generation = server.pool.gen.get_overall()
    address = "{}:{}".format(*server.description.address)

    await _arrives(client, AutoReconnect(f"{address}: connection closed"))

    assert server.pool.gen.get_overall() == generation + 1
    assert not server.description.is_server_type_known
    await client.admin.command("ping")  # and it recovers through the monitor, as PyMongo does


async def test_operations_time_out_unless_the_uri_says_otherwise(mongodb_uri: str) -> None:
    """A hung connection must not hold a saga forever: PyMongo's default is no socket timeout at all."""
    default = new_client(mongodb_uri)
    separator = "&" if "?" in mongodb_uri else "?"
    chosen = new_client(f"{mongodb_uri}{separator}socketTimeoutMS=2500")
    try:
        assert default.options.pool_options.socket_timeout == SOCKET_TIMEOUT_MS / 1000
        assert chosen.options.pool_options.socket_timeout == 2.5
    finally:
        await default.close()
        await chosen.close()
