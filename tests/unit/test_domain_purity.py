"""The domain stays pure: no module under domain/ imports an adapter, the worker or an I/O library."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

DOMAIN = Path(__file__).resolve().parents[2] / "domain"
FORBIDDEN = {"adapters", "consumer", "aiokafka", "pymongo", "bson", "motor", "stripe", "httpx", "requests"}


def _imported_roots(tree: ast.AST) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and _called_name(node) in ("__import__", "import_module"):
            roots |= {
                arg.value.split(".")[0]
                for arg in node.args
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str)
            }
    return roots


def _called_name(call: ast.Call) -> str | None:
    return getattr(call.func, "id", None) or getattr(call.func, "attr", None)


DOMAIN_FILES = sorted(DOMAIN.rglob("*.py"))


def test_the_domain_has_modules() -> None:
    assert len(DOMAIN_FILES) > 5


@pytest.mark.parametrize("path", DOMAIN_FILES, ids=lambda path: path.name)
def test_domain_module_imports_nothing_forbidden(path: Path) -> None:
    roots = _imported_roots(ast.parse(path.read_text(), filename=str(path)))
    assert not roots & FORBIDDEN, f"{path.name} imports {sorted(roots & FORBIDDEN)}"


def test_the_check_catches_forbidden_imports() -> None:
    sample = "import stripe\nfrom adapters.mongo import x\nimport pymongo.errors\n__import__('httpx')\n"
    assert _imported_roots(ast.parse(sample)) >= {"stripe", "adapters", "pymongo", "httpx"}


@pytest.mark.parametrize("path", DOMAIN_FILES, ids=lambda path: path.name)
def test_domain_modules_stay_small(path: Path) -> None:
    assert len(path.read_text().splitlines()) <= 300
