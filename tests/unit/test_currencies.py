"""The currency rule at every door: ISO 4217 codes Stripe supports, in any case, normalised to lower case."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from consumer.cli.main import main
from deploy.local.emulators.stripe_currencies import ISO_4217
from domain.currencies import CURRENCIES, normalised_currency
from domain.errors import PermanentError, Reason
from domain.events import PaymentLinkRequested
from domain.intake import parse_request
from domain.saga_record import SagaRecord
from tests.fakes.world import make_request, request_document

NOW = datetime(2030, 1, 15, 9, 30, tzinfo=UTC)


def test_the_domain_and_the_stripe_emulator_accept_the_same_currencies() -> None:
    assert CURRENCIES == ISO_4217
    assert {"usd", "eur", "gbp", "jpy", "chf"} <= CURRENCIES
    assert all(len(code) == 3 and code.isascii() and code.isalpha() and code.islower() for code in CURRENCIES)


@pytest.mark.parametrize(("given", "stored"), [("eur", "eur"), ("EUR", "eur"), ("Eur", "eur"), ("jPy", "jpy")])
def test_a_supported_code_in_any_case_is_accepted_in_lower_case(given: str, stored: str) -> None:
    request = parse_request(json.dumps(request_document(currency=given)).encode())
    assert request.currency == stored
    assert json.loads(request.model_dump_json())["currency"] == stored  # what is sent on and stored


@pytest.mark.parametrize(
    "currency",
    [
        pytest.param("xyz", id="not-iso"),
        pytest.param("XYZ", id="not-iso-upper"),
        pytest.param("xts", id="iso-test-code"),
        pytest.param("usn", id="iso-fund-code"),
        pytest.param("xau", id="precious-metal"),
        pytest.param("\u212awd", id="kelvin-sign-look-alike-of-kwd"),
        pytest.param("us", id="too-short"),
        pytest.param("euro", id="too-long"),
        pytest.param("", id="empty"),
    ],
)
def test_anything_else_is_an_invalid_event_naming_the_currency(currency: str) -> None:
    with pytest.raises(PermanentError) as caught:
        parse_request(json.dumps(request_document(currency=currency)).encode())
    assert caught.value.reason is Reason.INVALID_EVENT
    assert caught.value.message == (
        "invalid PaymentLinkRequested: currency: currency must be an ISO 4217 code Stripe supports, "
        f"such as 'eur' or 'USD', got {currency}"
    )


def test_normalised_currency_is_none_for_what_the_list_does_not_hold() -> None:
    assert normalised_currency("CHF") == "chf"
    assert normalised_currency("xyz") is None
    assert normalised_currency("\u212awd") is None


def test_a_stored_request_whose_currency_left_the_list_still_loads_for_resume_and_replay() -> None:
    # Accepted by an earlier version: its saga must still resume, compensate or replay (Stripe judges it).
    record = SagaRecord.start(make_request(), NOW)
    stored = record.model_copy(update={"request": {**record.request, "currency": "XYZ"}})
    assert stored.request_event().currency == "xyz"
    for malformed in ("x1z", "\u00e9ur", "xy", "xyzz"):  # the form still holds: three ASCII letters
        broken = record.model_copy(update={"request": {**record.request, "currency": malformed}})
        with pytest.raises(ValidationError):
            broken.request_event()
    with pytest.raises(ValidationError):  # outside a stored record, the list applies
        PaymentLinkRequested.model_validate({**record.request, "currency": "xyz"}, strict=False)


def test_the_json_schema_states_the_rule() -> None:
    currency = PaymentLinkRequested.model_json_schema()["properties"]["currency"]
    assert currency["pattern"] == "^[A-Za-z]{3}$"
    assert "any case" in currency["description"] and "lower case" in currency["description"]


@pytest.fixture
def keep_logging() -> Iterator[None]:
    """``paylink publish`` configures the root logger; give pytest's back afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def publish_dry_run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["publish", "--dry-run", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.usefixtures("keep_logging")
def test_publish_normalises_a_file_and_flags_alike(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    upper = tmp_path / "upper.json"
    upper.write_text(json.dumps(request_document(currency="EUR")))
    code, out, _ = publish_dry_run(["--file", str(upper)], capsys)
    assert code == 0 and json.loads(out)["currency"] == "eur"

    flags = ["--account", "a", "--contact", "c", "--days-until-due", "7", "--amount-item", "x:5"]
    code, out, _ = publish_dry_run([*flags, "--currency", "Gbp"], capsys)
    assert code == 0 and json.loads(out)["currency"] == "gbp"


@pytest.mark.usefixtures("keep_logging")
def test_publish_refuses_an_unsupported_currency(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    flags = ["--account", "a", "--contact", "c", "--days-until-due", "7", "--amount-item", "x:5"]
    code, out, err = publish_dry_run([*flags, "--currency", "XYZ"], capsys)
    assert (code, out) == (2, "")
    assert "not sent: invalid_event" in err and "got XYZ" in err

    unknown = tmp_path / "unknown.json"
    unknown.write_text(json.dumps(request_document(currency="xyz")))
    code, out, err = publish_dry_run(["--file", str(unknown)], capsys)
    assert (code, out) == (2, "") and "got xyz" in err
