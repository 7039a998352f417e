"""Where the tests find the real services they talk to.

Each service address comes, in order, from:
1. its ``PAYLINK_*`` variable (``make test`` sets them for the stack it started);
2. a Docker engine, when one answers: testcontainers starts Kafka and MongoDB;
3. otherwise the session fails with a message naming ``make services-up``.

The emulators are Python modules (``deploy.local.emulators``): when no address is given and nothing
answers on the default port, they are started here as subprocesses, so no Docker is needed for them.

Under ``CI=true`` no integration test is ever skipped for a missing service: it fails.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn
from urllib.parse import urlparse

import pytest
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

if TYPE_CHECKING:
    from consumer.runtime.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
HINT = "start the local stack with `make services-up` (or set {var})"


def _docker_engine_answers() -> bool:
    """Whether testcontainers could start the services. A local engine's socket is tried first: without an
    engine, the docker client's failed first request leaves its socket open (a ResourceWarning that pytest
    reports as an error in whichever test happens to be running)."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if host.startswith("unix://"):
        with socket.socket(socket.AF_UNIX) as probe:
            try:
                probe.connect(host.removeprefix("unix://"))
            except OSError:
                return False
    try:
        import docker  # type: ignore[import-untyped]

        client = docker.from_env(timeout=2)
        try:
            client.ping()
        finally:
            client.close()
        return True
    except Exception:
        return False


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _missing(service: str, var: str) -> NoReturn:
    pytest.fail(f"{service} is not reachable: {HINT.format(var=var)}", pytrace=False)


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    configured = os.environ.get("PAYLINK_KAFKA_BOOTSTRAP_SERVERS")
    if configured:
        yield configured
        return
    if _docker_engine_answers():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer("confluentinc/cp-kafka:7.7.1").with_kraft() as kafka:
            yield kafka.get_bootstrap_server()
        return
    _missing("Kafka", "PAYLINK_KAFKA_BOOTSTRAP_SERVERS")


@pytest.fixture(scope="session")
def mongodb_uri() -> Iterator[str]:
    configured = os.environ.get("PAYLINK_MONGODB_URI")
    if configured:
        yield configured
        return
    if _docker_engine_answers():
        from testcontainers.mongodb import MongoDbContainer

        with MongoDbContainer("mongo:8.0") as mongo:
            yield mongo.get_connection_url()
        return
    _missing("MongoDB (FerretDB)", "PAYLINK_MONGODB_URI")


def _emulator(var: str, default: str, module: str, suffix: str = "") -> Iterator[str]:
    """Yields the emulator's base URL, starting it as a subprocess when nothing answers."""
    configured = os.environ.get(var)
    base = (configured or default).removesuffix(suffix)
    address = urlparse(base)
    host, port = address.hostname or "127.0.0.1", address.port or 80
    if configured or _port_open(host, port):
        if not _port_open(host, port):
            _missing(module, var)
        yield base
        return
    process = subprocess.Popen(
        [sys.executable, "-m", f"deploy.local.emulators.{module}", "--host", host, "--port", str(port)],
        cwd=ROOT,  # `python -m` imports the package from its working directory
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while not _http_ok(f"{base}/_emulator/health"):
        if time.monotonic() > deadline or process.poll() is not None:
            process.kill()
            _missing(module, var)
        time.sleep(0.1)
    try:
        yield base
    finally:
        process.terminate()
        process.wait(timeout=10)


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@pytest.fixture(scope="session")
def stripe_api_base() -> Iterator[str]:
    yield from _emulator("PAYLINK_STRIPE_API_BASE", "http://127.0.0.1:12111", "stripe_emulator")


@pytest.fixture(scope="session")
def shortener_base() -> Iterator[str]:
    """The shortener emulator's base URL (``PAYLINK_SHORTENER_URL`` minus its ``/shorten`` path)."""
    yield from _emulator("PAYLINK_SHORTENER_URL", "http://127.0.0.1:12180/shorten", "shortener_emulator", "/shorten")


@pytest.fixture(scope="session")
async def mongo_client(mongodb_uri: str) -> AsyncIterator[AsyncMongoClient[dict[str, object]]]:
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(mongodb_uri, serverSelectionTimeoutMS=5000)
    try:
        await client.admin.command("ping")
    except Exception as error:
        await client.close()
        pytest.fail(f"MongoDB at {mongodb_uri} does not answer ({error}): {HINT.format(var='PAYLINK_MONGODB_URI')}")
    yield client
    await client.close()


@pytest.fixture
async def mongo_db(
    mongo_client: AsyncMongoClient[dict[str, object]],
) -> AsyncIterator[AsyncDatabase[dict[str, object]]]:
    """A fresh database per test, dropped afterwards, so tests never see each other's documents."""
    name = f"paylink_test_{uuid.uuid4().hex[:12]}"
    yield mongo_client[name]
    await mongo_client.drop_database(name)


@pytest.fixture
def unique_name() -> str:
    """A name no other test uses: for topics, consumer groups, accounts."""
    return f"t-{uuid.uuid4().hex[:12]}"


StackFactory = Callable[..., Awaitable["Settings"]]


@pytest.fixture
async def pipeline_stack(
    kafka_bootstrap: str,
    mongodb_uri: str,
    stripe_api_base: str,
    shortener_base: str,
    unique_name: str,
    mongo_client: AsyncMongoClient[dict[str, object]],
) -> AsyncIterator[StackFactory]:
    """Settings of a private pipeline (own topics, consumer group, database) on the shared stack.

    ``await pipeline_stack(**overrides)`` builds them (creating the topics unless ``with_topics=False``);
    the database is dropped after the test.
    """
    from tests.integration.harness import create_topics, settings_for

    made: list[Settings] = []

    async def make(with_topics: bool = True, **overrides: object) -> Settings:
        settings = settings_for(
            unique_name,
            kafka=kafka_bootstrap,
            mongodb_uri=mongodb_uri,
            stripe_base=stripe_api_base,
            shortener_base=shortener_base,
            **overrides,
        )
        if with_topics:
            await create_topics(settings)
        made.append(settings)
        return settings

    yield make
    for settings in made:
        await mongo_client.drop_database(settings.mongodb_uri.rsplit("/", 1)[1])
