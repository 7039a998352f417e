"""The local stack script's pure helpers (the script itself is exercised by every integration test)."""

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def load_stack_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("local_stack", ROOT / "deploy" / "local" / "stack.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_cluster_id_is_redrawn_while_it_would_read_as_an_option() -> None:
    # 0xfb 0xe0... encodes to "--A..." in base64url: the id a fresh stack drew once and Kafka's storage tool refused.
    draws = iter([bytes([0xFB, 0xE0]) + bytes(14), bytes([0xFB, 0xE0]) + bytes(14), bytes(range(16))])
    cluster_id = load_stack_script().new_cluster_id(lambda: next(draws))
    assert cluster_id == "AAECAwQFBgcICQoLDA0ODw"


def test_cluster_ids_are_22_characters_of_base64url() -> None:
    stack = load_stack_script()
    ids = {stack.new_cluster_id() for _ in range(2000)}
    assert len(ids) == 2000
    assert all(len(i) == 22 and not i.startswith("-") and "=" not in i for i in ids)


def test_a_proxied_listener_is_advertised_at_the_proxy(tmp_path: Path) -> None:
    # The reliability suite's Toxiproxy fronts Kafka: a client bootstrapping at the proxy must be told to
    # come back through the proxy, or it would talk to the broker directly after the bootstrap.
    stack = load_stack_script()
    data = tmp_path / "kafka" / "data"
    data.mkdir(parents=True)
    setattr(stack, "KAFKA_DATA", data)  # noqa: B010 (a module loaded from a path: mypy cannot see its globals)
    plain = dict(line.split("=", 1) for line in stack.kafka_properties(19392).read_text().splitlines())
    assert "PROXIED" not in plain["listeners"]
    setattr(stack, "KAFKA_PROXIED", (19394, 19492))  # noqa: B010
    props = dict(line.split("=", 1) for line in stack.kafka_properties(19392).read_text().splitlines())
    assert props["listeners"].endswith(",PROXIED://127.0.0.1:19394")
    assert props["advertised.listeners"].endswith(",PROXIED://localhost:19492")
    assert props["listener.security.protocol.map"].endswith(",PROXIED:PLAINTEXT")
    assert props["inter.broker.listener.name"] == "PLAINTEXT"
