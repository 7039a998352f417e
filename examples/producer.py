"""Send one PaymentLinkRequested with paylink's client, the way a CRM service would.

    python examples/producer.py --account acc-1042 --contact con-7 --amount 12000 --description Consulting

Prints the request's ``event_id`` (keep it: it is the idempotency key and becomes ``payment_link_id`` in
the results; ``--event-id`` re-sends the same request). The request is checked exactly as paylink's
worker checks it before anything is sent; a refusal prints the worker's reason and exits 2.
When tracing is on, pass the caller's W3C trace context with ``--traceparent`` (or ``TRACEPARENT``): it
travels as the message's ``traceparent`` header and parents the saga's spans.
Kafka and the topic come from ``--bootstrap``/``--topic`` or ``PAYLINK_KAFKA_BOOTSTRAP_SERVERS``/
``PAYLINK_REQUESTS_TOPIC`` (the service's own variables), else the local defaults.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from paylink.client import PermanentError, new_request, send_request


def arguments() -> argparse.Namespace:
    env = os.environ.get
    parser = argparse.ArgumentParser(description="send one payment link request")
    parser.add_argument("--bootstrap", default=env("PAYLINK_KAFKA_BOOTSTRAP_SERVERS", "localhost:9092"))
    parser.add_argument("--topic", default=env("PAYLINK_REQUESTS_TOPIC", "payment-links.requested"))
    parser.add_argument("--account", required=True, help="the CRM account (tenant)")
    parser.add_argument("--contact", required=True, help="a contact of that account")
    parser.add_argument("--currency", default="eur")
    parser.add_argument("--amount", type=int, default=12000, help="unit price in minor units")
    parser.add_argument("--quantity", type=int, default=1)
    parser.add_argument("--description", default="Consulting")
    parser.add_argument("--days-until-due", type=int, default=14)
    parser.add_argument("--correlation-id")
    parser.add_argument("--event-id", help="re-send the request with this event_id")
    parser.add_argument("--traceparent", default=env("TRACEPARENT"), help="W3C trace context of the caller")
    return parser.parse_args()


async def main() -> int:
    args = arguments()
    request = new_request(
        account_id=args.account,
        contact_id=args.contact,
        currency=args.currency,
        days_until_due=args.days_until_due,
        line_items=[{"description": args.description, "amount": args.amount, "quantity": args.quantity}],
        event_id=args.event_id,
        correlation_id=args.correlation_id,
    )
    try:
        sent = await send_request(args.bootstrap, args.topic, request, traceparent=args.traceparent)
    except PermanentError as refused:
        print(f"not sent: {refused.reason}: {refused.message}", file=sys.stderr)
        return 2
    print(sent.event_id)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
