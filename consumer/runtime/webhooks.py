"""``paylink webhooks``: the HTTP process receiving Stripe Connect webhooks (aiohttp's server).

Routes, on ``PAYLINK_WEBHOOKS_HOST``:``PAYLINK_WEBHOOKS_PORT``:
- ``POST /stripe/webhooks``: one delivery (``consumer.app.webhooks``). 400 for a bad or missing
  signature or an unreadable signed body (nothing stored), 413 for a body over 1 MiB (aiohttp refuses
  it before it is read whole), 200 once the event's effect is durable in the outbox (or it had none),
  503 when it could not be recorded or the link's saga is still running, so that Stripe retries;
- ``GET /healthz`` (the process is up), ``GET /readyz`` (MongoDB answers), ``GET /metrics``.

aiohttp's server rather than another framework: it is already a dependency (Stripe's transport), is
maintained, and gives request size limits and graceful shutdown. SIGTERM stops accepting connections
and lets deliveries in progress finish within ``webhooks_drain_s`` before the process exits.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from consumer.app.webhooks import Verdict, WebhookIntake

log = logging.getLogger("paylink.webhooks")

MAX_BODY_BYTES = 1024 * 1024  # Stripe's events are far smaller; anything bigger is not Stripe's
WEBHOOK_PATH = "/stripe/webhooks"
STATUS_OF = {
    Verdict.ACCEPTED: 200,
    Verdict.BAD_SIGNATURE: 400,
    Verdict.BAD_PAYLOAD: 400,
    Verdict.RETRY_LATER: 503,
}

ReadinessCheck = Callable[[], Awaitable[str | None]]


def build_app(intake: WebhookIntake, ready: ReadinessCheck) -> web.Application:
    async def receive(request: web.Request) -> web.Response:
        payload = await request.read()  # raises HTTPRequestEntityTooLarge (413) past client_max_size
        try:
            reply = await intake.receive(payload, request.headers.get("Stripe-Signature"))
        except Exception:
            # Never a 2xx for what was not recorded: Stripe retries the delivery.
            log.exception("webhook handling failed unexpectedly")
            return web.json_response({"error": "internal error; Stripe will retry"}, status=500)
        body: dict[str, str] = {"result": reply.outcome}
        if reply.verdict is not Verdict.ACCEPTED:
            body["detail"] = reply.detail
        return web.json_response(body, status=STATUS_OF[reply.verdict])

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(_: web.Request) -> web.Response:
        try:
            problem = await asyncio.wait_for(ready(), timeout=2.0)
        except Exception as error:
            problem = f"{type(error).__name__}"
        if problem:
            return web.Response(status=503, text=f"not ready: {problem}\n")
        return web.Response(text="ready\n")

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app.router.add_post(WEBHOOK_PATH, receive)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app


async def serve(app: web.Application, host: str, port: int, stop: asyncio.Event, drain_s: float) -> None:
    """Serves ``app`` until ``stop``; then stops accepting and gives requests in progress ``drain_s``."""
    runner = web.AppRunner(app, shutdown_timeout=drain_s, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    log.info("webhooks listening", extra={"host": host, "port": port, "path": WEBHOOK_PATH})
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
