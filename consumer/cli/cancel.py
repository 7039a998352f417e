"""``paylink cancel``: one PaymentLinkCancelRequested, validated like the worker validates it, then sent
keyed by the link's contact (looked up from the link's saga when ``--contact`` is not given)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import uuid
from datetime import UTC, datetime
from typing import Any

from consumer.app.cancels import cancel_identity
from consumer.cli.output import EXIT_OK, EXIT_USAGE
from consumer.cli.publish import publish_request
from consumer.runtime.bootstrap import open_stores
from consumer.runtime.settings import Settings
from domain.errors import PermanentError
from domain.intake import parse_cancel

log = logging.getLogger("paylink.cancel")


def cancel_from_flags(args: argparse.Namespace, contact_id: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "event_type": "PaymentLinkCancelRequested",
        "schema_version": 1,
        "occurred_at": datetime.now(UTC).isoformat(),
        "account_id": args.account,
        "payment_link_id": args.payment_link_id,
        "contact_id": contact_id,
    }
    optional = {"reason": args.reason, "correlation_id": args.correlation_id}
    body.update({key: value for key, value in optional.items() if value is not None})
    return body


async def contact_of(settings: Settings, payment_link_id: str, account_id: str) -> str | None:
    """The link's contact, from its saga; None when the account has no such link."""
    async with open_stores(settings) as stores:
        record = await stores.sagas.load(payment_link_id)
    return record.contact_id if record is not None and record.account_id == account_id else None


def cancel(args: argparse.Namespace, settings: Settings) -> int:
    contact = args.contact
    if contact is None:
        contact = asyncio.run(contact_of(settings, _canonical(args.payment_link_id), args.account))
        if contact is None:
            print(
                f"paylink cancel: no payment link {args.payment_link_id} in account {args.account} "
                "(give --contact to send the cancel anyway)",
                file=sys.stderr,
            )
            return EXIT_USAGE
    try:
        request = parse_cancel(json.dumps(cancel_from_flags(args, contact)).encode())
    except PermanentError as error:
        print(f"paylink cancel: not sent: {error.reason}: {error.message}", file=sys.stderr)
        return EXIT_USAGE
    value = request.model_dump_json(exclude_none=True)
    if args.dry_run:
        print(value)
        return EXIT_OK
    asyncio.run(publish_request(settings, value.encode(), request.contact_id))
    log.info("cancel requested", extra={**cancel_identity(request), "event_id": request.event_id})
    print(request.event_id)
    print(f"published to {settings.requests_topic}", file=sys.stderr)
    return EXIT_OK


def _canonical(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return value
