"""Settings that speak: a refused value names its PAYLINK_* variable and the form it takes (never the value:
it may be a misplaced secret), a PAYLINK_* variable that is no setting draws a warning naming the closest
known one, and enumerated settings refuse what they do not know."""

from __future__ import annotations

from pathlib import Path

import pytest

from consumer.cli.main import main
from consumer.runtime.settings import Settings, SettingsError, load_settings, unknown_variables


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in Settings.model_fields:
        monkeypatch.delenv(f"PAYLINK_{name.upper()}", raising=False)
    monkeypatch.chdir(tmp_path)  # no .env of the working tree


def test_a_typo_is_named_with_the_closest_setting() -> None:
    warnings = unknown_variables({"PAYLINK_KAFKA_BOOTSTRAP_SERVER": "x", "PAYLINK_LOG_LEVEL": "INFO", "HOME": "/"})
    assert warnings == [
        "PAYLINK_KAFKA_BOOTSTRAP_SERVER is not a paylink setting and is ignored; "
        "did you mean PAYLINK_KAFKA_BOOTSTRAP_SERVERS?"
    ]


def test_a_variable_like_no_setting_is_still_reported() -> None:
    assert unknown_variables({"PAYLINK_ZZZ": "1"}) == ["PAYLINK_ZZZ is not a paylink setting and is ignored"]


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("PAYLINK_LOG_FORMAT", "yaml", "'auto', 'json' or 'text'"),
        ("PAYLINK_LOG_LEVEL", "LOUD", "'DEBUG', 'INFO', 'WARNING', 'ERROR' or 'CRITICAL'"),
        ("PAYLINK_STRIPE_TIMEOUT_S", "soon", "valid number"),
        ("PAYLINK_MAX_IN_FLIGHT", "0", "greater than or equal to 1"),
        ("PAYLINK_WEBHOOKS_PORT", "70000", "less than or equal to 65535"),
    ],
)
def test_a_refused_value_names_its_variable_and_form_not_the_value(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as refused:
        load_settings()
    (problem,) = refused.value.problems
    assert problem.startswith(f"{variable}: ") and expected in problem
    assert f"'{value}'" not in problem and f"input_value={value}" not in problem


def test_enumerations_ignore_case() -> None:
    settings = Settings(log_level="debug", log_format="JSON")
    assert (settings.log_level, settings.log_format) == ("DEBUG", "json")


def test_the_command_exits_2_naming_the_variable_and_warns_about_typos(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PAYLINK_LOG_FORMAT", "yaml")
    monkeypatch.setenv("PAYLINK_KAFKA_BOOTSTRAP_SERVER", "elsewhere:9092")
    assert main(["schema", "--settings"]) == 2
    err = capsys.readouterr().err
    assert "paylink: invalid setting PAYLINK_LOG_FORMAT: Input should be 'auto', 'json' or 'text'" in err
    assert "did you mean PAYLINK_KAFKA_BOOTSTRAP_SERVERS?" in err


def test_a_typo_alone_warns_and_the_command_runs(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PAYLINK_LOG_LEVLE", "DEBUG")
    assert main(["schema", "--settings"]) == 0
    assert "PAYLINK_LOG_LEVLE is not a paylink setting and is ignored; did you mean PAYLINK_LOG_LEVEL?" in (
        capsys.readouterr().err
    )
