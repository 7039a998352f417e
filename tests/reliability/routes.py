"""Which proxy each paylink process of a ``proxied`` scenario talks through.

Every process gets its own MongoDB proxy (so one relay can be cut off from the store while its standby
is not), and the workers and relays share one Kafka proxy (the broker advertises a single proxied
address), one Stripe and one shortener proxy. The other way round, the emulator's webhook endpoint of a
proxied run points at the ``webhooks`` proxy in front of ``paylink webhooks``. The suite's own clients
keep the direct addresses: a partition cuts paylink off, never the observer.

Every listen port is derived from the stack's ports (``PROXY_OFFSET`` above the port fronted; Kafka's
from ``PrivateStack.kafka_proxied``), so two stacks on other ports never share a proxy port.
"""

from __future__ import annotations

from dataclasses import dataclass

from consumer.runtime.settings import Settings
from tests.reliability.stack import PrivateStack
from tests.reliability.toxiproxy import Proxy

PROXY_OFFSET = 100  # a proxy listens this far above the port it fronts (19317 → 19417, …)


@dataclass(frozen=True)
class Routes:
    kafka: Proxy
    stripe: Proxy
    shortener: Proxy
    webhooks: Proxy  # Stripe → `paylink webhooks`: the emulator delivers through it
    mongo: dict[str, Proxy]  # by role: "worker", "relay-0", "relay-1", …
    kafka_for: frozenset[str] = frozenset({"worker", "relay"})  # commands that reach Kafka through its proxy

    @classmethod
    def of(cls, stack: PrivateStack, relays: int, kafka_for: frozenset[str] = frozenset({"worker", "relay"})) -> Routes:
        assert stack.kafka_proxied is not None, "the Kafka proxy needs the broker's proxied listener"
        listen, advertised = stack.kafka_proxied
        mongo_base = stack.mongo_port + PROXY_OFFSET
        roles = ["worker", *(f"relay-{i}" for i in range(relays))]
        return cls(
            kafka=Proxy("kafka", advertised, listen),
            stripe=Proxy("stripe", stack.stripe_port + PROXY_OFFSET, stack.stripe_port),
            shortener=Proxy("shortener", stack.shortener_port + PROXY_OFFSET, stack.shortener_port),
            webhooks=Proxy("webhooks", stack.webhooks_port + PROXY_OFFSET, stack.webhooks_port),
            mongo={role: Proxy(f"mongo-{role}", mongo_base + i, stack.mongo_port) for i, role in enumerate(roles)},
            kafka_for=kafka_for,
        )

    @property
    def proxies(self) -> list[Proxy]:
        return [self.kafka, self.stripe, self.shortener, self.webhooks, *self.mongo.values()]

    def settings(self, direct: Settings, role: str) -> Settings:
        """``direct`` (the suite's settings) with every dependency reached through this role's proxies."""
        database = direct.mongodb_uri.rsplit("/", 1)[1]
        mongo = self.mongo.get(role, self.mongo["worker"])
        proxied_kafka = role.split("-")[0] in self.kafka_for
        # localhost: the name the broker advertises for its proxied listener
        kafka = f"localhost:{self.kafka.listen_port}" if proxied_kafka else direct.kafka_bootstrap_servers
        return direct.model_copy(
            update={
                "kafka_bootstrap_servers": kafka,
                "mongodb_uri": f"mongodb://{mongo.address}/{database}",
                "stripe_api_base": f"http://{self.stripe.address}",
                "shortener_url": f"http://{self.shortener.address}/shorten",
            }
        )
