"""The relay lease when the relays' clocks disagree (issue #17, reliability scenario ``skewed_clocks``).

A contender runs in a subprocess under Debian's ``faketime``, its wall clock minutes off. Judged by each
relay's own wall clock, a relay 10 minutes ahead saw a freshly renewed term as expired and took the lease
(two active relays); a holder 10 minutes behind wrote an expiry already past for everyone else. The lease
now judges every expiry by the store's clock, so neither happens.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from datetime import timedelta
from typing import Any

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from adapters.mongo.lease import MongoLease
from tests.conftest import ROOT

LENGTH = timedelta(seconds=30)
CONTENDER = """
import asyncio, json, sys
from datetime import timedelta
from pymongo import AsyncMongoClient
from adapters.mongo.lease import MongoLease

async def main() -> None:
    uri, database, name, owner = sys.argv[1:5]
    client = AsyncMongoClient(uri, tz_aware=True)
    lease = MongoLease(client[database], name, owner, timedelta(seconds=30))
    won = await lease.acquire()
    print(json.dumps({"won": won}))
    await client.close()

asyncio.run(main())
"""

pytestmark = pytest.mark.skipif(
    shutil.which("faketime") is None, reason="LOUD SKIP: Debian's faketime is missing (apt-get install -y faketime)"
)


async def skewed_acquire(db: AsyncDatabase[dict[str, Any]], name: str, owner: str, offset_s: int) -> bool:
    host, port = await db.client.address or ("127.0.0.1", 27017)
    uri = f"mongodb://{host}:{port}"
    command = [
        "env",
        "FAKETIME_DONT_FAKE_MONOTONIC=1",
        "faketime",
        "-f",
        f"{offset_s:+d}s",
        sys.executable,
        "-c",
        CONTENDER,
        uri,
        db.name,
        name,
        owner,
    ]
    done = await asyncio.to_thread(
        subprocess.run, command, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return bool(json.loads(done.stdout.strip().splitlines()[-1])["won"])


@pytest.mark.parametrize("offset_s", [600, 90, -600])
async def test_a_contender_with_a_skewed_clock_does_not_take_a_held_lease(
    mongo_db: AsyncDatabase[dict[str, Any]], offset_s: int
) -> None:
    name = f"skew-ahead-{offset_s}"
    holder = MongoLease(mongo_db, name, "holder", LENGTH)
    assert await holder.acquire()
    assert not await skewed_acquire(mongo_db, name, "skewed", offset_s)
    assert await holder.acquire()  # still the holder: it renews


@pytest.mark.parametrize("offset_s", [-600, 600])
async def test_a_holder_with_a_skewed_clock_keeps_the_lease_from_others(
    mongo_db: AsyncDatabase[dict[str, Any]], offset_s: int
) -> None:
    name = f"skew-holder-{offset_s}"
    assert await skewed_acquire(mongo_db, name, "skewed", offset_s)
    standby = MongoLease(mongo_db, name, "standby", LENGTH)
    assert not await standby.acquire()  # the skewed holder's term runs 30 s by the store's clock
