"""Notifications from the billing provider (Stripe webhooks), as the rest of paylink sees them."""

from __future__ import annotations

from dataclasses import dataclass

from domain.lifecycle import Observation


class InvalidSignature(Exception):
    """The delivery's signature is missing, malformed, too old, or made with no configured secret."""


class InvalidPayload(Exception):
    """The delivery is signed but is not an event paylink can read."""


@dataclass(frozen=True)
class Notification:
    """A verified event: its id and type, the connected account it comes from (None for the platform's
    own events), and what it shows of an invoice (None for types that cannot move a link)."""

    id: str
    type: str
    account: str | None
    observation: Observation | None
