"""Read paylink's results the way a CRM service should, with paylink's client.

    python examples/consumer.py --group crm-payment-links --from-beginning

- Its own consumer group: offsets are committed only after an event is handled, so a crash re-reads
  (at least once) and nothing is skipped.
- Dedupes on ``event_id``: delivery is at least once, and a duplicate request re-publishes its stored
  result with the same ``event_id``.
- Orders results by ``attempt`` per ``payment_link_id``: a ``PaymentLinkFailed`` with ``retryable=true``
  is not final, a replay may later publish ``PaymentLinkCreated`` (or another ``Failed``) with a higher
  ``attempt``; the highest wins, a lower one arriving late is ignored.
- Handles every type of the results topic: the two results, the five lifecycle events and
  ``PaymentLinkCancelRejected``; a type it does not know is skipped (the contract only adds types).

Prints one line per event: ``<payment_link_id> <what happened>``. A real service keeps ``seen`` and
``links`` in its own database, updated in the same transaction as the CRM record.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from dataclasses import dataclass, field

from paylink.client import (
    Event,
    PaymentLinkCancelRejected,
    PaymentLinkCreated,
    PaymentLinkFailed,
    PaymentLinkOverdue,
    PaymentLinkPaid,
    PaymentLinkPaymentFailed,
    PaymentLinkUncollectible,
    PaymentLinkVoided,
    UnknownEvent,
    iter_results,
)


@dataclass
class Links:
    """What the CRM knows: events already handled, and each link's current result and its attempt."""

    seen: set[str] = field(default_factory=set)
    attempts: dict[str, int] = field(default_factory=dict)
    states: dict[str, str] = field(default_factory=dict)

    def handle(self, event: Event) -> str:
        if event.event_id in self.seen:
            return f"{_link(event)} duplicate {event.event_id} ignored"
        self.seen.add(event.event_id)
        if isinstance(event, PaymentLinkCreated | PaymentLinkFailed):
            return self._result(event)
        return f"{_link(event)} {describe(event)}"

    def _result(self, event: PaymentLinkCreated | PaymentLinkFailed) -> str:
        link = event.payment_link_id
        if event.attempt < self.attempts.get(link, 0):
            return f"{link} stale attempt={event.attempt} ignored (current attempt={self.attempts[link]})"
        self.attempts[link] = event.attempt
        self.states[link] = describe(event)
        return f"{link} {self.states[link]}"


def _link(event: Event) -> str:
    return str(getattr(event, "payment_link_id", "-"))


def describe(event: Event) -> str:
    """The CRM's reading of one event."""
    match event:
        case PaymentLinkCreated():
            return f"created attempt={event.attempt} url={event.url}"
        case PaymentLinkFailed(retryable=True):
            return f"failed attempt={event.attempt} reason={event.reason} not final (a replay may create it)"
        case PaymentLinkFailed():
            return f"failed attempt={event.attempt} reason={event.reason} final"
        case PaymentLinkPaid():
            return f"paid {event.amount_paid} {event.currency}"
        case PaymentLinkPaymentFailed():
            return f"payment attempt failed ({event.failure_message}); still payable"
        case PaymentLinkOverdue():
            return f"overdue since {event.due_date}"
        case PaymentLinkUncollectible():
            return "uncollectible"
        case PaymentLinkVoided():
            return f"voided source={event.source}"
        case PaymentLinkCancelRejected():
            final = "not final" if event.retryable else "final"
            return f"cancel {event.cancel_request_id} rejected reason={event.reason} {final}"
        case UnknownEvent():
            return f"skipped unknown type {event.event_type}"
    return "skipped"


def arguments() -> argparse.Namespace:
    env = os.environ.get
    parser = argparse.ArgumentParser(description="follow paylink's results in a consumer group")
    parser.add_argument("--bootstrap", default=env("PAYLINK_KAFKA_BOOTSTRAP_SERVERS", "localhost:9092"))
    parser.add_argument("--topic", default=env("PAYLINK_RESULTS_TOPIC", "payment-links.results"))
    parser.add_argument("--group", default="example-crm", help="this service's own consumer group")
    parser.add_argument("--from-beginning", action="store_true", help="a new group starts at the oldest event")
    return parser.parse_args()


async def main() -> None:
    args = arguments()
    links = Links()
    # Ctrl-C or SIGTERM (a service manager) ends the loop between two events: what was handled is
    # committed, and the consumer leaves its group cleanly.
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    messages = iter_results(
        args.bootstrap, args.topic, group_id=args.group, from_beginning=args.from_beginning, stop=stop
    )
    async for message in messages:
        print(links.handle(message.event), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
