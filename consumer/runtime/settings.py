"""paylink's settings: the only place that reads the environment.

Every variable has the prefix ``PAYLINK_`` (a ``.env`` file in the working directory is read too).
Defaults point at the local stack (``make services-up``), so every command works with none set.
Secrets are ``SecretStr``: they never appear in ``repr``, logs or errors.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

LOCAL_STRIPE_TEST_KEY = "sk_test_paylink_local_emulator"
LOCAL_SHORTENER_TOKEN = "paylink-local-shortener-token"
PREFIX = "PAYLINK_"


def _case(convert: str) -> BeforeValidator:
    """Enumerated values are matched case-insensitively (``info`` is ``INFO``)."""
    return BeforeValidator(lambda value: getattr(value, convert)() if isinstance(value, str) else value)


LogFormat = Annotated[Literal["auto", "json", "text"], _case("lower")]
LogLevel = Annotated[Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], _case("upper")]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=PREFIX, env_file=".env", extra="ignore")

    # Kafka
    kafka_bootstrap_servers: str = Field("localhost:9092", description="Kafka bootstrap servers")
    requests_topic: str = Field("payment-links.requested", description="input topic")
    results_topic: str = Field("payment-links.results", description="output topic")
    consumer_group: str = Field("paylink-worker", description="the worker's consumer group")
    topic_partitions: int = Field(6, ge=1, description="partitions used by `paylink topics create`")
    topic_replication_factor: int = Field(1, ge=1, description="replication used by `paylink topics create`")

    # MongoDB
    mongodb_uri: str = Field(
        "mongodb://localhost:27017/paylink",
        description="MongoDB URI; the database in its path holds sagas, outbox and dead letters",
    )
    crm_database: str | None = Field(
        None, description="database holding `accounts` and `contacts` (default: the same database)"
    )
    crm_account_cache_s: float = Field(
        30.0,
        ge=0,
        description="how long a process keeps a tenant's connected Stripe account (0: read it for every saga); "
        "a tenant disconnected or reconnected in the CRM is seen within this",
    )

    # Stripe
    stripe_api_key: SecretStr = Field(SecretStr(LOCAL_STRIPE_TEST_KEY), description="Stripe secret key (platform)")
    stripe_api_base: str = Field("http://localhost:12111", description="Stripe API base URL")
    stripe_timeout_s: float = Field(10.0, gt=0, description="timeout of one Stripe HTTP request")
    stripe_rate_limit_per_s: float = Field(
        100.0, gt=0, description="client-side request budget per connected account (Stripe live-mode limit)"
    )
    stripe_rate_burst: int = Field(
        10,
        ge=1,
        description="requests per connected account that may go at once after a quiet spell (never more than "
        "the budget in any rolling second)",
    )
    stripe_items_per_call: int = Field(
        250,
        ge=1,
        le=250,
        description="line items per Stripe call (>1: add_lines bulk calls where the lines allow; 1: one "
        "call per item). Change it only while no saga is in flight: the idempotency keys depend on it",
    )

    # Shortener
    shortener_url: str = Field("http://localhost:12180/shorten", description="shortener endpoint")
    shortener_token: SecretStr = Field(SecretStr(LOCAL_SHORTENER_TOKEN), description="shortener bearer token")
    shortener_timeout_s: float = Field(2.0, gt=0, description="shortener timeout; on expiry the long URL is used")

    # Worker
    max_in_flight: int = Field(128, ge=1, description="sagas processed concurrently per worker")
    retry_attempts: int = Field(6, ge=1, description="attempts per transient failure before giving up")
    retry_initial_s: float = Field(0.2, gt=0, description="first retry backoff (exponential, with jitter)")
    retry_max_s: float = Field(5.0, gt=0, description="longest single retry backoff")
    drain_timeout_s: float = Field(20.0, gt=0, description="SIGTERM/rebalance: how long in-flight work may finish")

    # Relay
    relay_lease_s: float = Field(5.0, gt=0, description="relay lease length; a standby takes over after it lapses")
    relay_poll_ms: int = Field(
        10,
        ge=1,
        description="idle relay's polling interval for new outbox entries (longest); halving it halves the "
        "idle wait before a result is picked up, for one more store read per interval",
    )
    relay_poll_min_ms: int = Field(
        5, ge=1, description="relay's first poll after a batch; each empty poll doubles it up to `relay_poll_ms`"
    )
    relay_batch_size: int = Field(2000, ge=1, description="outbox entries published per batch")
    outbox_retention_s: float = Field(
        7 * 24 * 3600.0, gt=0, description="published outbox entries are purged after this long"
    )
    outbox_purge_interval_s: float = Field(
        60.0, gt=0, description="how often the active relay, when idle, purges published outbox entries"
    )

    # Webhooks (paylink webhooks)
    webhooks_host: str = Field("0.0.0.0", description="address `paylink webhooks` listens on")
    webhooks_port: int = Field(8088, ge=1, le=65535, description="port of `paylink webhooks` (POST /stripe/webhooks)")
    stripe_webhook_secrets: SecretStr = Field(
        SecretStr(""),
        description="Stripe webhook signing secrets (`whsec_...`), comma-separated: a delivery signed with any one "
        "is accepted (several during a rotation)",
    )
    webhook_tolerance_s: int = Field(
        300, ge=1, description="how old a webhook signature's timestamp may be (Stripe's library default)"
    )
    webhooks_drain_s: float = Field(10.0, gt=0, description="SIGTERM: how long deliveries in progress may finish")

    overdue_scan_interval_s: float = Field(
        300.0, gt=0, description="how often the relay holding the scan lease looks for links past their due date"
    )
    overdue_scan_batch: int = Field(1000, ge=1, description="links looked at per overdue scan pass (oldest first)")

    # Start (worker, relay, webhooks)
    start_wait_s: float = Field(
        60.0,
        gt=0,
        description="how long a starting process waits for MongoDB and Kafka (one deadline for both) before it "
        "exits 3; /healthz is served meanwhile, /readyz says what is awaited",
    )
    start_log_interval_s: float = Field(
        5.0, gt=0, description="while waiting at start, a warning naming the awaited dependency this often"
    )

    # Operations
    metrics_port: int | None = Field(
        None, description="serve /metrics, /healthz, /readyz on this port (off when unset)"
    )
    log_format: LogFormat = Field("auto", description="`json`, `text`, or `auto` (text on a terminal)")
    log_level: LogLevel = Field("INFO", description="`DEBUG`, `INFO`, `WARNING`, `ERROR` or `CRITICAL`")

    def webhook_secrets(self) -> list[str]:
        """The signing secrets, in the order given (blank entries dropped)."""
        return [part.strip() for part in self.stripe_webhook_secrets.get_secret_value().split(",") if part.strip()]

    @property
    def crm_database_name(self) -> str | None:
        """The CRM database, or None for 'the database of ``mongodb_uri``'."""
        return self.crm_database


class TracingSettings(BaseSettings):
    """The standard OpenTelemetry variables paylink itself reads (``consumer.runtime.tracing``).

    The OTLP exporter reads its transport details on its own (``OTEL_EXPORTER_OTLP_HEADERS``,
    ``..._TIMEOUT``, ``..._COMPRESSION``, ``..._CERTIFICATE``), and the SDK ``OTEL_RESOURCE_ATTRIBUTES`` and
    the batch processor's ``OTEL_BSP_*``: their names and meanings are the OpenTelemetry specification's,
    and re-declaring them here would only copy the SDK's parsing (docs/operations.md, "Tracing").
    """

    model_config = SettingsConfigDict(env_prefix="OTEL_", env_file=".env", extra="ignore")

    sdk_disabled: bool = Field(False, description="`true`: no tracing at all, even with an endpoint set")
    exporter_otlp_endpoint: str | None = Field(
        None,
        description="OTLP/HTTP base URL (e.g. `http://localhost:4318`); traces go to `<it>/v1/traces`. "
        "Unset (and no traces endpoint): no SDK, nothing recorded or exported",
    )
    exporter_otlp_traces_endpoint: str | None = Field(
        None, description="full OTLP/HTTP traces URL; wins over `OTEL_EXPORTER_OTLP_ENDPOINT`"
    )
    service_name: str | None = Field(
        None, description="service name on the spans (default `paylink-<command>`: worker, relay, webhooks, ...)"
    )
    traces_sampler: str = Field(
        "parentbased_always_on",
        description="`always_on`, `always_off`, `traceidratio`, `parentbased_always_on`, "
        "`parentbased_always_off`, `parentbased_traceidratio`",
    )
    traces_sampler_arg: float = Field(1.0, ge=0, le=1, description="sampling ratio of the `*traceidratio` samplers")

    @property
    def traces_endpoint(self) -> str | None:
        """Where spans go, or None for 'tracing off'."""
        if self.sdk_disabled:
            return None
        if self.exporter_otlp_traces_endpoint:
            return self.exporter_otlp_traces_endpoint
        if self.exporter_otlp_endpoint:
            return self.exporter_otlp_endpoint.rstrip("/") + "/v1/traces"
        return None


class SettingsError(ValueError):
    """Settings that cannot be used; ``problems`` name each ``PAYLINK_*`` variable and the form it takes."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


def load_settings() -> Settings:
    """The settings from the environment (and ``.env``); ``SettingsError`` naming the variables at fault.

    The values given are left out of the messages: a misplaced secret must not reach a terminal or a log.
    """
    try:
        return Settings()
    except ValidationError as error:
        raise SettingsError(
            [_problem(detail) for detail in error.errors(include_input=False, include_url=False)]
        ) from None


def _problem(detail: Mapping[str, object]) -> str:
    location = detail.get("loc") or ()
    name = str(location[0]) if isinstance(location, tuple) and location else "?"
    field = Settings.model_fields.get(name)
    expected = f" (expected: {field.description})" if field is not None and field.description else ""
    return f"{PREFIX}{name.upper()}: {detail.get('msg')}{expected}"


def unknown_variables(environ: Mapping[str, str] | None = None) -> list[str]:
    """A warning per ``PAYLINK_*`` variable that is no setting (pydantic-settings ignores it silently),
    naming the closest known one: a typo must not leave a default in force unnoticed."""
    known = [PREFIX + name.upper() for name in Settings.model_fields]
    warnings = []
    for variable in sorted(environ if environ is not None else os.environ):
        if not variable.upper().startswith(PREFIX) or variable.upper() in known:
            continue
        closest = difflib.get_close_matches(variable.upper(), known, n=1, cutoff=0.6)
        hint = f"; did you mean {closest[0]}?" if closest else ""
        warnings.append(f"{variable} is not a paylink setting and is ignored{hint}")
    return warnings
