"""``paylink webhooks``: the HTTP process receiving Stripe Connect webhooks (aiohttp's server).

Routes, on ``PAYLINK_WEBHOOKS_HOST``:``PAYLINK_WEBHOOKS_PORT``:
- ``POST /stripe/webhooks``: one delivery (``consumer.app.webhooks``). 400 for a bad or missing
  signature or an unreadable signed body (nothing stored), 413 for a body over 1 MiB (aiohttp refuses
  it before it is read whole), 200 once the event's effect is durable in the outbox (or it had none),
  503 when it could not be recorded or the link's saga is still running, so that Stripe retries;
- ``GET /healthz`` (the process is up), ``GET /readyz`` (MongoDB answers), ``GET /metrics``
  (``consumer.runtime.health``): served from the first second, while the process still waits for
  MongoDB (deliveries meanwhile get 503, so Stripe retries them).

aiohttp's server rather than another framework: it is already a dependency (Stripe's transport), is
maintained, and gives request size limits and graceful shutdown. SIGTERM stops accepting connections
and lets deliveries in progress finish within ``webhooks_drain_s`` before the process exits.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from aiohttp import web
from prometheus_client import CollectorRegistry

from consumer.app.webhooks import Verdict, WebhookIntake
from consumer.runtime.health import ReadinessCheck, add_health_routes

log = logging.getLogger("paylink.webhooks")

MAX_BODY_BYTES = 1024 * 1024  # Stripe's events are far smaller; anything bigger is not Stripe's
WEBHOOK_PATH = "/stripe/webhooks"
STATUS_OF = {
    Verdict.ACCEPTED: 200,
    Verdict.BAD_SIGNATURE: 400,
    Verdict.BAD_PAYLOAD: 400,
    Verdict.RETRY_LATER: 503,
}


class IntakeSlot:
    """The intake, once the process has reached MongoDB (None while it starts)."""

    def __init__(self, intake: WebhookIntake | None = None) -> None:
        self.intake = intake


def build_app(
    intake: WebhookIntake | IntakeSlot, ready: ReadinessCheck, registry: CollectorRegistry | None = None
) -> web.Application:
    slot = intake if isinstance(intake, IntakeSlot) else IntakeSlot(intake)

    async def receive(request: web.Request) -> web.Response:
        payload = await request.read()  # raises HTTPRequestEntityTooLarge (413) past client_max_size
        if slot.intake is None:
            return web.json_response({"error": "starting; Stripe will retry"}, status=503)
        try:
            reply = await slot.intake.receive(payload, request.headers.get("Stripe-Signature"))
        except Exception:
            # Never a 2xx for what was not recorded: Stripe retries the delivery.
            log.exception("webhook handling failed unexpectedly")
            return web.json_response({"error": "internal error; Stripe will retry"}, status=500)
        body: dict[str, str] = {"result": reply.outcome}
        if reply.verdict is not Verdict.ACCEPTED:
            body["detail"] = reply.detail
        return web.json_response(body, status=STATUS_OF[reply.verdict])

    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app.router.add_post(WEBHOOK_PATH, receive)
    add_health_routes(app, ready, registry or CollectorRegistry())
    return app


@contextlib.asynccontextmanager
async def serving(app: web.Application, host: str, port: int, drain_s: float) -> AsyncIterator[None]:
    """Serves ``app`` while inside; on exit stops accepting and gives requests in progress ``drain_s``."""
    runner = web.AppRunner(app, shutdown_timeout=drain_s, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    log.info("webhooks listening", extra={"host": host, "port": port, "path": WEBHOOK_PATH})
    try:
        yield
    finally:
        await runner.cleanup()
