"""The proxies of a proxied run listen on ports derived from the stack's: two stacks never share one."""

from __future__ import annotations

from pathlib import Path

from tests.reliability.routes import Routes
from tests.reliability.stack import PrivateStack


def _stack(base: int) -> PrivateStack:
    return PrivateStack(
        Path("/nonexistent"),
        kafka_port=base + 92,
        mongo_port=base + 17,
        stripe_port=base + 11,
        shortener_port=base + 80,
        webhooks_port=base + 88,
    )


def _ports(stack: PrivateStack) -> set[int]:
    routes = Routes.of(stack, relays=2)
    assert stack.kafka_proxied is not None
    return {proxy.listen_port for proxy in routes.proxies} | {stack.kafka_proxied[0]}


def test_every_proxy_has_its_own_port_apart_from_the_services() -> None:
    stack = _stack(19300)
    ports = _ports(stack)
    assert len(ports) == len(Routes.of(stack, relays=2).proxies) + 1
    services = {stack.kafka_port, stack.kafka_port + 1, stack.mongo_port, stack.stripe_port}
    assert not ports & (services | {stack.shortener_port, stack.webhooks_port, stack.toxiproxy_port})


def test_the_webhooks_proxy_fronts_paylink_webhooks() -> None:
    stack = _stack(24300)
    webhooks = Routes.of(stack, relays=2).webhooks
    assert webhooks.upstream_port == stack.webhooks_port
    assert webhooks.listen_port != stack.webhooks_port


def test_a_stack_on_other_ports_shares_no_proxy_port() -> None:
    assert not _ports(_stack(19300)) & _ports(_stack(24300))
