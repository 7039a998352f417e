"""docs/operations.md cannot drift from the code: its settings table is generated, its event examples
are the ones the models accept, and every command and metric it names exists (and every metric is named)."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import pytest

from consumer import metrics
from consumer.cli.examples import EXAMPLES
from consumer.cli.parser import build_parser
from consumer.cli.schema import settings_table
from consumer.runtime.settings import Settings

DOC = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text()


def test_the_settings_table_is_the_generated_one() -> None:
    block = DOC.split("<!-- settings:begin -->\n", 1)[1].split("<!-- settings:end -->", 1)[0]
    assert block == settings_table(), "regenerate the table with `paylink schema --settings`"
    for name in Settings.model_fields:
        assert f"`PAYLINK_{name.upper()}`" in block


@pytest.mark.parametrize("event_type", sorted(EXAMPLES))
def test_the_event_examples_are_the_checked_ones(event_type: str) -> None:
    match = re.search(rf"<!-- example:{event_type} -->\n```json\n(.*?)\n```", DOC, re.S)
    assert match, f"no example of {event_type}"
    assert json.loads(match.group(1)) == EXAMPLES[event_type]  # validated in test_schema_asyncapi


# Documented ahead of the branch that adds it (DESIGN.md Part 2); drop it from here once the parser has it.
COMING: set[str] = set()  # commands documented before their parser entry lands


def test_every_command_named_exists() -> None:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    named = set(re.findall(r"`paylink ([a-z-]+)", DOC))
    assert named and named <= set(sub.choices) | COMING, named - set(sub.choices)
    assert set(sub.choices) <= named, "every command is documented"


def test_every_metric_is_documented_and_every_documented_metric_exists() -> None:
    defined = {
        value._name + ("_total" if value._type == "counter" else "")
        for value in vars(metrics).values()
        if hasattr(value, "_name") and hasattr(value, "_type")
    }
    named = set(re.findall(r"\bpaylink_[a-z_]+[a-z]", DOC))
    assert defined <= named, defined - named
    assert named <= defined, named - defined
