"""Contract of ``CrmDirectory`` (domain/ports.py): the same tests on ``FakeCrm`` and on ``MongoCrmDirectory``.

Each implementation comes with a tiny harness that seeds raw ``accounts``/``contacts`` documents of the
contract (docs/contract.md, "CRM store") and reads back what was stored, so the tests see the store itself and
not only what the port answers.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any, Protocol

import pytest
from bson import ObjectId
from pymongo.asynchronous.database import AsyncDatabase

from adapters.mongo.crm import MongoCrmDirectory
from domain.crm import Contact
from domain.errors import PermanentError, Reason
from domain.ports import CrmDirectory
from tests.fakes.crm import FakeCrm


class CrmHarness(Protocol):
    directory: CrmDirectory

    async def add_account(self, document: dict[str, Any]) -> None: ...
    async def add_contact(self, document: dict[str, Any]) -> None: ...
    async def remove_contact(self, contact_id: Any) -> None: ...
    async def stored_contact(self, contact_id: Any) -> dict[str, Any] | None: ...
    async def contact_count(self) -> int: ...


class FakeHarness:
    def __init__(self) -> None:
        self.fake = FakeCrm()
        self.directory: CrmDirectory = self.fake

    async def add_account(self, document: dict[str, Any]) -> None:
        self.fake.accounts[str(document["_id"])] = document

    async def add_contact(self, document: dict[str, Any]) -> None:
        # The fake keys contacts by the id's string form: a 24-hex ObjectId and its hex string are one key.
        self.fake.contacts[str(document["_id"])] = document

    async def remove_contact(self, contact_id: Any) -> None:
        del self.fake.contacts[str(contact_id)]

    async def stored_contact(self, contact_id: Any) -> dict[str, Any] | None:
        return self.fake.contacts.get(str(contact_id))

    async def contact_count(self) -> int:
        return len(self.fake.contacts)


class MongoHarness:
    def __init__(self, database: AsyncDatabase[dict[str, Any]]) -> None:
        self.database = database
        self.directory: CrmDirectory = MongoCrmDirectory(database)

    async def add_account(self, document: dict[str, Any]) -> None:
        await self.database["accounts"].insert_one(dict(document))

    async def add_contact(self, document: dict[str, Any]) -> None:
        await self.database["contacts"].insert_one(dict(document))

    async def remove_contact(self, contact_id: Any) -> None:
        await self.database["contacts"].delete_one({"_id": contact_id})

    async def stored_contact(self, contact_id: Any) -> dict[str, Any] | None:
        return await self.database["contacts"].find_one({"_id": contact_id})

    async def contact_count(self) -> int:
        return await self.database["contacts"].count_documents({})


@pytest.fixture(params=["fake", pytest.param("mongo", marks=pytest.mark.integration)])
def crm(request: pytest.FixtureRequest) -> CrmHarness:
    if request.param == "fake":
        return FakeHarness()
    return MongoHarness(request.getfixturevalue("mongo_db"))


def _id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def _acct() -> str:
    return f"acct_{uuid.uuid4().hex[:16]}"


async def _contact(crm: CrmHarness, account_id: str, contact_id: Any = None, **fields: Any) -> Any:
    contact_id = contact_id if contact_id is not None else _id("con")
    await crm.add_contact({"_id": contact_id, "account_id": account_id, **fields})
    return contact_id


# --- stripe_account_of -------------------------------------------------------------------------------


async def test_stripe_account_of_returns_the_connected_account(crm: CrmHarness) -> None:
    account_id, stripe_account = _id("acc"), _acct()
    await crm.add_account({"_id": account_id, "stripe": {"account_id": stripe_account}})
    await crm.add_account({"_id": _id("acc"), "stripe": {"account_id": _acct()}})  # another tenant

    assert await crm.directory.stripe_account_of(account_id) == stripe_account


@pytest.mark.parametrize(
    "account",
    [
        pytest.param(None, id="missing-account"),
        pytest.param({}, id="no-stripe"),
        pytest.param({"stripe": {}}, id="empty-stripe"),
        pytest.param({"stripe": {"account_id": None}}, id="null-account-id"),
    ],
)
async def test_stripe_account_of_is_none_for_missing_or_unconnected_accounts(
    crm: CrmHarness, account: dict[str, Any] | None
) -> None:
    account_id = _id("acc")
    if account is not None:
        await crm.add_account({"_id": account_id, **account})
    await crm.add_account({"_id": _id("acc"), "stripe": {"account_id": _acct()}})  # a connected neighbour

    assert await crm.directory.stripe_account_of(account_id) is None


# --- find_contact --------------------------------------------------------------------------------------


async def test_find_contact_maps_the_contract_document(crm: CrmHarness) -> None:
    account_id, stripe_account = _id("acc"), _acct()
    document: dict[str, Any] = {
        "_id": _id("con"),
        "account_id": account_id,
        "name": "Ada Lovelace",
        "first_name": "Ada",
        "last_name": "Lovelace",
        "email": "ada@example.com",
        "phone": "+15550100",
        "address": {"street": "1 Analytical Way", "unit": "2", "city": "London", "postal_code": "N1", "country": "GB"},
        "stripe_customers": {stripe_account: "cus_existing"},
    }
    await crm.add_contact(document)

    contact = await crm.directory.find_contact(account_id, document["_id"])

    assert contact == Contact.from_document(document)
    assert contact is not None
    assert (contact.id, contact.email, contact.phone) == (document["_id"], "ada@example.com", "+15550100")
    assert contact.address is not None and contact.address.city == "London"
    assert contact.stripe_customers == {stripe_account: "cus_existing"}


async def test_find_contact_is_none_when_missing(crm: CrmHarness) -> None:
    account_id = _id("acc")
    await _contact(crm, account_id)

    assert await crm.directory.find_contact(account_id, _id("con")) is None
    assert await crm.directory.find_contact(account_id, str(ObjectId())) is None


async def test_find_contact_is_none_for_another_accounts_contact(crm: CrmHarness) -> None:
    mine, theirs = _id("acc"), _id("acc")
    await crm.add_account({"_id": mine, "stripe": {"account_id": _acct()}})
    their_contact = await _contact(crm, theirs, email="secret@example.com")

    assert await crm.directory.find_contact(mine, their_contact) is None
    assert await crm.directory.find_contact(theirs, their_contact) is not None


@pytest.mark.parametrize("stored_as", ["objectid", "string"])
async def test_a_24_hex_contact_id_is_found_stored_as_objectid_or_as_string(crm: CrmHarness, stored_as: str) -> None:
    account_id = _id("acc")
    hex_id = str(ObjectId())
    await _contact(crm, account_id, ObjectId(hex_id) if stored_as == "objectid" else hex_id, name="Grace")
    await _contact(crm, account_id, ObjectId(), name="Someone else")

    contact = await crm.directory.find_contact(account_id, hex_id)

    assert contact is not None
    assert (contact.id, contact.name) == (hex_id, "Grace")
    assert await crm.directory.find_contact(_id("acc"), hex_id) is None  # still tenant-scoped


# --- link_customer -------------------------------------------------------------------------------------


async def test_link_customer_sets_the_link_when_absent(crm: CrmHarness) -> None:
    account_id, stripe_account = _id("acc"), _acct()
    contact_id = await _contact(crm, account_id, email="ada@example.com")

    linked = await crm.directory.link_customer(account_id, contact_id, stripe_account, "cus_first")

    assert linked == "cus_first"
    stored = await crm.stored_contact(contact_id)
    assert stored is not None and stored["stripe_customers"] == {stripe_account: "cus_first"}
    contact = await crm.directory.find_contact(account_id, contact_id)
    assert contact is not None and contact.stripe_customers == {stripe_account: "cus_first"}
    assert stored["email"] == "ada@example.com"  # the rest of the contact is untouched


async def test_link_customer_never_overwrites_an_existing_link(crm: CrmHarness) -> None:
    account_id, stripe_account = _id("acc"), _acct()
    contact_id = await _contact(crm, account_id, stripe_customers={stripe_account: "cus_seeded"})

    assert await crm.directory.link_customer(account_id, contact_id, stripe_account, "cus_other") == "cus_seeded"
    assert await crm.directory.link_customer(account_id, contact_id, stripe_account, "cus_seeded") == "cus_seeded"

    stored = await crm.stored_contact(contact_id)
    assert stored is not None and stored["stripe_customers"] == {stripe_account: "cus_seeded"}


async def test_link_customer_is_idempotent_and_returns_the_first_link(crm: CrmHarness) -> None:
    account_id, stripe_account = _id("acc"), _acct()
    contact_id = await _contact(crm, account_id)

    first = await crm.directory.link_customer(account_id, contact_id, stripe_account, "cus_1")
    again = await crm.directory.link_customer(account_id, contact_id, stripe_account, "cus_1")
    later = await crm.directory.link_customer(account_id, contact_id, stripe_account, "cus_2")

    assert first == again == later == "cus_1"


async def test_links_are_per_stripe_account_and_keep_the_others(crm: CrmHarness) -> None:
    account_id, old_account, account_a, account_b = _id("acc"), _acct(), _acct(), _acct()
    contact_id = await _contact(crm, account_id, stripe_customers={old_account: "cus_old"})

    assert await crm.directory.link_customer(account_id, contact_id, account_a, "cus_a") == "cus_a"
    assert await crm.directory.link_customer(account_id, contact_id, account_b, "cus_b") == "cus_b"

    stored = await crm.stored_contact(contact_id)
    assert stored is not None
    assert stored["stripe_customers"] == {old_account: "cus_old", account_a: "cus_a", account_b: "cus_b"}


async def test_concurrent_links_converge_on_one_customer(crm: CrmHarness) -> None:
    account_id, stripe_account = _id("acc"), _acct()
    contact_ids = [await _contact(crm, account_id) for _ in range(8)]

    for contact_id in contact_ids:
        candidates = [f"cus_{n}" for n in range(8)]
        answers = await asyncio.gather(
            *(crm.directory.link_customer(account_id, contact_id, stripe_account, c) for c in candidates)
        )

        assert len(set(answers)) == 1, answers
        assert answers[0] in candidates
        stored = await crm.stored_contact(contact_id)
        assert stored is not None and stored["stripe_customers"] == {stripe_account: answers[0]}


async def test_link_customer_on_an_objectid_contact_updates_that_document(crm: CrmHarness) -> None:
    account_id, stripe_account = _id("acc"), _acct()
    object_id = ObjectId()
    await _contact(crm, account_id, object_id)
    before = await crm.contact_count()

    assert await crm.directory.link_customer(account_id, str(object_id), stripe_account, "cus_oid") == "cus_oid"

    stored = await crm.stored_contact(object_id)
    assert stored is not None and stored["stripe_customers"] == {stripe_account: "cus_oid"}
    assert await crm.contact_count() == before  # no second document under the string id


async def test_link_customer_raises_contact_not_found_when_the_contact_vanished(crm: CrmHarness) -> None:
    account_id, stripe_account = _id("acc"), _acct()
    contact_id = await _contact(crm, account_id)
    assert await crm.directory.find_contact(account_id, contact_id) is not None
    await crm.remove_contact(contact_id)

    with pytest.raises(PermanentError) as raised:
        await crm.directory.link_customer(account_id, contact_id, stripe_account, "cus_1")

    assert raised.value.reason is Reason.CONTACT_NOT_FOUND
    assert not raised.value.retryable
    assert await crm.contact_count() == 0  # no upsert brought it back


async def test_link_customer_never_writes_to_another_accounts_contact(crm: CrmHarness) -> None:
    mine, theirs, stripe_account = _id("acc"), _id("acc"), _acct()
    their_contact = await _contact(crm, theirs)

    with pytest.raises(PermanentError) as raised:
        await crm.directory.link_customer(mine, their_contact, stripe_account, "cus_intruder")

    assert raised.value.reason is Reason.CONTACT_NOT_FOUND
    stored = await crm.stored_contact(their_contact)
    assert stored is not None and "stripe_customers" not in stored


# --- MongoCrmDirectory's connected-account cache (PAYLINK_CRM_ACCOUNT_CACHE_S) ---------------------------


@pytest.mark.integration
async def test_a_kept_connected_account_is_answered_without_reading_the_store(
    mongo_db: AsyncDatabase[dict[str, Any]],
) -> None:
    account_id, stripe_account = _id("acc"), _acct()
    await mongo_db["accounts"].insert_one({"_id": account_id, "stripe": {"account_id": stripe_account}})
    directory = MongoCrmDirectory(mongo_db, account_ttl_s=3600)
    assert await directory.stripe_account_of(account_id) == stripe_account

    await mongo_db["accounts"].delete_one({"_id": account_id})  # disconnected: seen once the TTL is over

    assert await directory.stripe_account_of(account_id) == stripe_account


@pytest.mark.integration
async def test_without_a_ttl_every_lookup_reads_the_store(mongo_db: AsyncDatabase[dict[str, Any]]) -> None:
    account_id, stripe_account = _id("acc"), _acct()
    await mongo_db["accounts"].insert_one({"_id": account_id, "stripe": {"account_id": stripe_account}})
    directory = MongoCrmDirectory(mongo_db, account_ttl_s=0)
    assert await directory.stripe_account_of(account_id) == stripe_account

    await mongo_db["accounts"].delete_one({"_id": account_id})

    assert await directory.stripe_account_of(account_id) is None


@pytest.mark.integration
async def test_an_unconnected_account_is_not_kept(mongo_db: AsyncDatabase[dict[str, Any]]) -> None:
    account_id, stripe_account = _id("acc"), _acct()
    directory = MongoCrmDirectory(mongo_db, account_ttl_s=3600)
    assert await directory.stripe_account_of(account_id) is None

    await mongo_db["accounts"].insert_one({"_id": account_id, "stripe": {"account_id": stripe_account}})

    assert await directory.stripe_account_of(account_id) == stripe_account  # connecting is seen at once
