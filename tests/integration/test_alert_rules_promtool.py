"""paylink's alert rules checked and unit-tested by the real promtool (built into .local/bin by
`make go-tools`; `make test` builds it first)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROMTOOL = ROOT / ".local" / "bin" / "promtool"
ALERTS = ROOT / "deploy" / "alerts"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL.exists(), f"{PROMTOOL} missing: run `make go-tools`"
    return subprocess.run([str(PROMTOOL), *args], capture_output=True, text=True, timeout=120, check=False)


def test_the_rules_file_is_valid() -> None:
    checked = promtool("check", "rules", str(ALERTS / "paylink-rules.yaml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 9 rules found" in checked.stdout + checked.stderr


def test_the_prometheus_rule_groups_are_valid(tmp_path: Path) -> None:
    spec = yaml.safe_load((ROOT / "deploy" / "k8s" / "monitoring" / "prometheusrule.yaml").read_text())["spec"]
    (tmp_path / "groups.yaml").write_text(yaml.safe_dump(spec))
    checked = promtool("check", "rules", str(tmp_path / "groups.yaml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.parametrize("tests", sorted((ALERTS / "tests").glob("*.yaml")), ids=lambda path: path.name)
def test_the_rules_pass_their_promtool_unit_tests(tests: Path) -> None:
    ran = promtool("test", "rules", str(tests))
    assert ran.returncode == 0, ran.stdout + ran.stderr


def test_promtool_can_fail(tmp_path: Path) -> None:
    """A wrong expectation fails: the unit tests above are not passing vacuously."""
    wrong = (ALERTS / "tests" / "paylink-rules-test.yaml").read_text().replace("severity: critical", "severity: info")
    (tmp_path / "wrong.yaml").write_text(wrong.replace("../paylink-rules.yaml", str(ALERTS / "paylink-rules.yaml")))
    assert promtool("test", "rules", str(tmp_path / "wrong.yaml")).returncode != 0
