"""The dependency rule of ``consumer/``, checked on the source (every import, at any depth).

    consumer.cli  ──▶  consumer.runtime  ──▶  consumer.app  ──▶  consumer.ports / consumer.metrics
                                                          └──▶  domain, adapters (through ports)

- nothing outside ``consumer.cli`` imports ``consumer.cli``;
- ``consumer.runtime`` never imports ``consumer.cli``; ``consumer.app`` imports neither;
- ``consumer.ports`` and ``consumer.metrics`` import no other part of ``consumer``;
- concrete adapters (``adapters.*``) are imported only by the composition root,
  ``consumer.runtime.bootstrap``; ``adapters`` never imports ``consumer``;
- ``paylink`` (the integrators' client) imports only ``domain`` and ``adapters.system`` (the one clock) of
  the project: never the service (``consumer``) nor the vendor adapters; only ``consumer.cli`` of the service
  imports it;
- the module-level import graph of ``domain``, ``adapters`` and ``consumer`` has no cycle;
- no function-local imports in ``consumer/``, except the ones listed in ``LOCAL_IMPORTS_ALLOWED``, each
  with its measured reason in a comment at the import.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("domain", "adapters", "consumer", "paylink")
COMPOSITION_ROOT = "consumer.runtime.bootstrap"
LOCAL_IMPORTS_ALLOWED = {
    # Only imported once a command failed: aiokafka + pymongo at the top cost every `paylink` call ~0.2 s.
    ("consumer.cli.main", "aiokafka.errors"),
    ("consumer.cli.main", "pymongo.errors"),
    # Only imported when tracing is on: the OpenTelemetry SDK, exporter and instrumentations add 0.09-0.2 s
    # to every process start (measured), which tracing off must not pay.
    ("consumer.runtime.tracing", "consumer.runtime"),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, ast.Module]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            found[module_name(path)] = ast.parse(path.read_text(), filename=str(path))
    return found


def imported(node: ast.Import | ast.ImportFrom, module: str) -> Iterator[str]:
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
        return
    if node.level:  # relative: resolve against the importing module's package
        base = module.split(".")[: -node.level]
        target = ".".join([*base, node.module] if node.module else base)
    else:
        target = node.module or ""
    yield target
    for alias in node.names:  # `from consumer.cli import main` imports the module consumer.cli.main
        yield f"{target}.{alias.name}"


def imports(tree: ast.Module, module: str, *, top_level_only: bool = False) -> set[str]:
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.update(imported(node, module))
        elif top_level_only and isinstance(node, ast.If):  # `if TYPE_CHECKING:` blocks count too
            found.update(
                i
                for child in node.body
                if isinstance(child, ast.Import | ast.ImportFrom)
                for i in imported(child, module)
            )
    return found


def within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def violations(graph: dict[str, set[str]]) -> list[str]:
    found = []
    for module, targets in sorted(graph.items()):
        for target in sorted(targets):
            if within(target, "consumer.cli") and not within(module, "consumer.cli"):
                found.append(f"{module} imports {target}: nothing outside consumer.cli may import it")
            if within(module, "consumer.app") and within(target, "consumer.runtime"):
                found.append(f"{module} imports {target}: use cases must not depend on the runtime")
            if module in ("consumer.ports", "consumer.metrics") and within(target, "consumer") and target != module:
                found.append(f"{module} imports {target}: the shared base of consumer/ imports none of it")
            if within(module, "consumer") and within(target, "adapters") and module != COMPOSITION_ROOT:
                found.append(f"{module} imports {target}: only {COMPOSITION_ROOT} may import concrete adapters")
            if within(module, "adapters") and within(target, "consumer"):
                found.append(f"{module} imports {target}: adapters depend on the domain only")
            if within(module, "paylink") and _service_side(target):
                found.append(f"{module} imports {target}: the client depends on domain and adapters.system only")
            if within(target, "paylink") and not within(module, "paylink") and not within(module, "consumer.cli"):
                found.append(f"{module} imports {target}: only consumer.cli uses the client")
    return found


def _service_side(target: str) -> bool:
    return within(target, "consumer") or (within(target, "adapters") and not within(target, "adapters.system"))


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Elementary cycles found by a depth-first search (one per back edge)."""
    found: list[list[str]] = []
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                found.append([*stack[stack.index(target) :], target])
            elif target in graph and target not in state:
                visit(target)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


@pytest.fixture(scope="module")
def sources() -> dict[str, ast.Module]:
    return modules()


def test_consumer_follows_the_dependency_rule(sources: dict[str, ast.Module]) -> None:
    graph = {name: imports(tree, name) for name, tree in sources.items()}
    assert violations(graph) == []


def test_no_import_cycles(sources: dict[str, ast.Module]) -> None:
    known = set(sources)
    graph = {
        name: {t for t in imports(tree, name, top_level_only=True) if t in known} for name, tree in sources.items()
    }
    assert cycles(graph) == []


def test_no_function_local_imports_in_consumer(sources: dict[str, ast.Module]) -> None:
    local = set()
    for name, tree in sources.items():
        if within(name, "consumer"):
            for function in ast.walk(tree):
                if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                    for node in ast.walk(function):
                        if isinstance(node, ast.ImportFrom | ast.Import):
                            target = node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
                            local.add((name, target or ""))
    assert local - LOCAL_IMPORTS_ALLOWED == set()


@pytest.mark.parametrize(
    ("module", "target", "rule"),
    [
        ("consumer.runtime.worker", "consumer.cli.output", "nothing outside consumer.cli"),
        ("consumer.app.replay", "consumer.runtime.bootstrap", "must not depend on the runtime"),
        ("consumer.cli.status", "adapters.mongo.outbox", "only consumer.runtime.bootstrap"),
        ("adapters.mongo.outbox", "consumer.ports", "adapters depend on the domain only"),
        ("consumer.ports", "consumer.app.retry", "imports none of it"),
        ("paylink.client", "consumer.runtime.settings", "domain and adapters.system only"),
        ("paylink.client", "adapters.mongo.outbox", "domain and adapters.system only"),
        ("consumer.runtime.worker", "paylink.client", "only consumer.cli uses the client"),
    ],
)
def test_the_rule_catches_a_planted_import(module: str, target: str, rule: str) -> None:
    assert any(rule in problem for problem in violations({module: {target}}))


def test_the_cycle_search_finds_a_planted_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c", "a"]]
