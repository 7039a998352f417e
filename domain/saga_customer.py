"""What the saga's ``customer`` step reads and decides, before and around its Stripe calls: the tenant's
connected account, the contact and its email (each a permanent failure when missing, ADR 0014), the
customer found or created, and the invoice's description."""

from __future__ import annotations

from domain.billing import MAX_EMAIL_CHARS, NewCustomer, customer_search_query, stripe_email
from domain.crm import Contact
from domain.errors import PermanentError, Reason, excerpt
from domain.events import PaymentLinkRequested
from domain.keys import customer_key
from domain.ports import Billing, CrmDirectory


async def connected_account(crm: CrmDirectory, request: PaymentLinkRequested) -> str:
    stripe_account = await crm.stripe_account_of(request.account_id)
    if not stripe_account:
        raise PermanentError(
            Reason.ACCOUNT_NOT_CONNECTED,
            f"account {excerpt(request.account_id)} has no connected Stripe account "
            "(accounts.stripe.account_id is missing)",
        )
    return stripe_account


async def contact_of(crm: CrmDirectory, request: PaymentLinkRequested) -> Contact:
    contact = await crm.find_contact(request.account_id, request.contact_id)
    if contact is None:
        raise PermanentError(
            Reason.CONTACT_NOT_FOUND,
            f"contact {excerpt(request.contact_id)} not found in account {excerpt(request.account_id)}",
        )
    return contact


def email_of(contact: Contact, request: PaymentLinkRequested) -> str:
    email = stripe_email(contact)
    if email is not None:
        return email
    whose = f"contact {excerpt(contact.id)} of account {excerpt(request.account_id)}"
    if contact.email is None:
        problem = "has no email, which Stripe needs to invoice the customer: add an email to the contact"
    else:
        problem = (
            f"has an email of {len(contact.email)} characters, more than Stripe's {MAX_EMAIL_CHARS}: "
            "correct the contact's email"
        )
    raise PermanentError(Reason.CONTACT_MISSING_EMAIL, f"{whose} {problem}, then request the link again")


async def find_or_create_customer(billing: Billing, stripe_account: str, contact: Contact, email: str) -> str:
    query = customer_search_query(email, contact.phone)
    assert query is not None  # an email always makes a query
    found = await billing.search_customers(stripe_account, query)
    if found:
        return found[0]
    customer = NewCustomer.from_contact(contact)
    key = customer_key(stripe_account, contact.account_id, contact.id, customer.stripe_params())
    return await billing.create_customer(stripe_account, customer, key)


def invoice_description(request: PaymentLinkRequested, contact: Contact, email: str) -> str:
    if request.description:
        return request.description
    return excerpt(f"Payment requested from {contact.display_name or email}", 500)
