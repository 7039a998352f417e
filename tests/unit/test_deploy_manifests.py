"""Static checks of the deployment files: deploy/Dockerfile, deploy/compose.yaml, deploy/k8s/, .dockerignore.

Nothing is built or started: the files are parsed and held to the contracts they share with the code.
Settings names come from ``consumer.runtime.settings.Settings``, the CLI's subcommands from the list below, ports
and probe paths from each process's ``--metrics-port`` argument.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import SecretStr

from consumer.cli.parser import build_parser
from consumer.runtime.settings import Settings
from consumer.runtime.webhooks import MAX_BODY_BYTES, WEBHOOK_PATH
from deploy.local.demo import arguments as demo_arguments

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
COMPOSE = DEPLOY / "compose.yaml"
K8S = DEPLOY / "k8s"
K8S_EXAMPLES = K8S / "examples"  # applied by hand, not by the kustomization
DOCKERIGNORE = ROOT / ".dockerignore"

# `paylink <subcommand>`: the CLI's commands (consumer/cli/parser.py). `topics` only as `topics create`.
CLI_COMMANDS = {"worker", "relay", "webhooks", "topics create", "publish", "status", "replay", "schema", "results"}
METRICS_PORTS = {"worker": 9464, "relay": 9465}
# `paylink webhooks` serves the webhook path, health and metrics on one port: PAYLINK_WEBHOOKS_PORT.
WEBHOOKS_PORT = Settings.model_fields["webhooks_port"].default
EMULATOR_MODULES = {"stripe_emulator", "shortener_emulator"}
SECRET_NAME = "paylink-secrets"
# Settings that hold credentials: every SecretStr field, and the MongoDB URI (it carries the password).
SECRET_SETTINGS = {
    f"PAYLINK_{name.upper()}"
    for name, info in Settings.model_fields.items()
    if info.annotation is SecretStr or SecretStr in getattr(info.annotation, "__args__", ())
} | {"PAYLINK_MONGODB_URI"}
SETTINGS_ENV = {f"PAYLINK_{name.upper()}" for name in Settings.model_fields}
PAYLINK_VAR = re.compile(r"\bPAYLINK_[A-Z0-9_]*[A-Z0-9]\b")
STRIPE_KEY = re.compile(r"\b(sk|rk|pk)_(live|test)", re.IGNORECASE)


# ---------------------------------------------------------------------------------------------------------
# Loading


def load_yaml_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def k8s_documents() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(K8S.glob("*.y*ml")):
        docs.extend(doc for doc in load_yaml_documents(path) if doc.get("kind") != "Kustomization")
    return docs


def k8s_objects(kind: str) -> list[dict[str, Any]]:
    return [doc for doc in k8s_documents() if doc.get("kind") == kind]


def k8s_object(kind: str, name: str) -> dict[str, Any]:
    matches = [doc for doc in k8s_objects(kind) if doc["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} named {name}, found {len(matches)}"
    return matches[0]


def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def pod_spec(doc: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = doc["spec"]["template"]["spec"]
    return spec


def workload_containers() -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(workload, container) for every container of every pod-carrying object."""
    for doc in k8s_documents():
        if doc.get("kind") in {"Deployment", "StatefulSet", "DaemonSet", "Job"}:
            spec = pod_spec(doc)
            for container in spec.get("containers", []) + spec.get("initContainers", []):
                yield doc, container


def config_map_data() -> dict[str, str]:
    data: dict[str, str] = k8s_object("ConfigMap", "paylink-config")["data"]
    return data


def setting(name: str) -> Any:
    """A setting's value in the ConfigMap, else its default in Settings."""
    env = f"PAYLINK_{name.upper()}"
    data = config_map_data()
    if env in data:
        return data[env]
    return Settings.model_fields[name].default


# --- Dockerfile ------------------------------------------------------------------------------------------


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]

    def last(self, keyword: str) -> str | None:
        found = self.all(keyword)
        return found[-1] if found else None


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) with line continuations joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        pending += line
        keyword, _, args = pending.strip().partition(" ")
        instructions.append((keyword.upper(), args.strip()))
        pending = ""
    assert not pending, "Dockerfile ends in a line continuation"
    return instructions


def dockerfile_stages() -> tuple[dict[str, str], list[Stage]]:
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for keyword, args in dockerfile_instructions(DOCKERFILE.read_text()):
        if keyword == "FROM":
            words = [w for w in args.split() if not w.startswith("--platform")]
            base = re.sub(r"\$\{?(\w+)\}?", lambda m: global_args.get(m.group(1), m.group(0)), words[0])
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base, name))
        elif not stages:
            assert keyword == "ARG", f"only ARG may precede the first FROM, not {keyword}"
            key, _, default = args.partition("=")
            global_args[key] = default
        else:
            stages[-1].instructions.append((keyword, args))
    return global_args, stages


def exec_form(args: str) -> list[str]:
    """A JSON-array (exec form) instruction argument; shell form is split like a shell would."""
    if args.startswith("["):
        value = json.loads(args)
        assert isinstance(value, list)
        return [str(v) for v in value]
    return shlex.split(args)


def env_keys(args: str) -> list[str]:
    """The variable names an ENV instruction sets (`ENV A=1 B=2` or legacy `ENV A 1`)."""
    if "=" not in args.split()[0]:
        return [args.split()[0]]
    return [token.split("=", 1)[0] for token in shlex.split(args)]


def final_stage() -> Stage:
    return dockerfile_stages()[1][-1]


# --- shared helpers --------------------------------------------------------------------------------------


def image_is_pinned(image: str) -> bool:
    """Has an explicit tag other than `latest` (or a digest)."""
    if "@sha256:" in image:
        return True
    last = image.rsplit("/", 1)[-1]
    if ":" not in last:
        return False
    return last.split(":", 1)[1] not in {"", "latest"}


def metrics_port_arg(argv: list[str]) -> int | None:
    for i, arg in enumerate(argv):
        if arg == "--metrics-port":
            return int(argv[i + 1])
        if arg.startswith("--metrics-port="):
            return int(arg.split("=", 1)[1])
    return None


def paylink_subcommand(argv: list[str]) -> str:
    """`worker`, `topics create`, ... from a paylink argv (the image's entry point is `paylink`)."""
    if argv and argv[0] == "paylink":
        argv = argv[1:]
    assert argv, "no paylink subcommand given"
    if argv[0] == "topics":
        return " ".join(argv[:2])
    return argv[0]


def compose_environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): str(v) for k, v in env.items()}


def compose_command(service: dict[str, Any]) -> list[str]:
    command = service.get("command") or []
    return shlex.split(command) if isinstance(command, str) else [str(c) for c in command]


def paylink_compose_services() -> dict[str, dict[str, Any]]:
    """The services that run the paylink runtime image (entry point `paylink`)."""
    services = compose()["services"]
    return {
        name: svc
        for name, svc in services.items()
        if (svc.get("build") or {}).get("target") == "runtime"
        or str(svc.get("image", "")).split(":")[0].endswith("/paylink")
        or str(svc.get("image", "")).split(":")[0] == "paylink"
    }


def deployment_for(component: str) -> dict[str, Any]:
    return k8s_object("Deployment", f"paylink-{component}")


def drain_timeout_s() -> float:
    return float(setting("drain_timeout_s"))


def duration_s(value: str | int) -> float:
    """A Compose duration (`30s`, `1m30s`, `1500ms`) in seconds."""
    if isinstance(value, int):
        return float(value)
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", value)
    assert parts and "".join(n + u for n, u in parts) == value, f"bad duration {value!r}"
    return sum(float(n) * units[u] for n, u in parts)


MANIFEST_FILES = [DOCKERFILE, COMPOSE, *sorted(K8S.glob("*.y*ml")), *sorted(K8S_EXAMPLES.glob("*.y*ml"))]


def k8s_example_objects(kind: str) -> list[dict[str, Any]]:
    return [
        doc for path in sorted(K8S_EXAMPLES.glob("*.y*ml")) for doc in load_yaml_documents(path) if doc["kind"] == kind
    ]


# ---------------------------------------------------------------------------------------------------------
# Parsing


def test_every_yaml_under_deploy_parses() -> None:
    paths = sorted(DEPLOY.rglob("*.y*ml"))
    assert COMPOSE in paths
    assert len(list(K8S.glob("*.y*ml"))) >= 4
    for path in paths:
        docs = load_yaml_documents(path)
        assert docs, f"{path} holds no YAML document"
        assert all(isinstance(doc, dict) for doc in docs), f"{path}: every document must be a mapping"


def test_every_k8s_document_is_a_named_object() -> None:
    for doc in k8s_documents():
        assert doc.get("apiVersion") and doc.get("kind"), doc
        assert doc.get("metadata", {}).get("name"), doc


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    manifests = {p.name for p in K8S.glob("*.y*ml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == manifests
    for image in kustomization.get("images", []):
        assert image.get("newTag") not in {None, "", "latest"}, image


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (with kustomize) not installed")
def test_kustomization_builds() -> None:
    built = subprocess.run(["kubectl", "kustomize", str(K8S)], capture_output=True, text=True, timeout=60, check=False)
    assert built.returncode == 0, built.stderr
    objects = [doc for doc in yaml.safe_load_all(built.stdout) if doc]
    assert len(objects) == len(k8s_documents())


# ---------------------------------------------------------------------------------------------------------
# Settings names


def test_every_paylink_variable_is_a_setting() -> None:
    used: dict[str, set[str]] = {}

    def note(var: str, where: str) -> None:
        used.setdefault(var, set()).add(where)

    # Compose: every environment block (services and x- fragments alike).
    data = compose()
    for name, service in data["services"].items():
        for var in compose_environment(service):
            note(var, f"compose service {name}")
    # Kubernetes: ConfigMap data, env entries, secretKeyRef keys.
    for doc in k8s_objects("ConfigMap"):
        for var in doc.get("data", {}):
            note(var, f"ConfigMap {doc['metadata']['name']}")
    for doc, container in workload_containers():
        for entry in container.get("env", []):
            note(entry["name"], f"{doc['kind']} {doc['metadata']['name']}")
    # Dockerfile ENV.
    for stage in dockerfile_stages()[1]:
        for args in stage.all("ENV"):
            for var in env_keys(args):
                note(var, f"Dockerfile stage {stage.name}")
    # Any other mention in the manifests' text (commands, healthchecks, comments) and the README.
    for path in [*MANIFEST_FILES, DEPLOY / "README.md"]:
        if path.exists():
            for var in PAYLINK_VAR.findall(path.read_text()):
                note(var, str(path.relative_to(ROOT)))

    paylink_vars = {var: where for var, where in used.items() if var.startswith("PAYLINK_")}
    assert paylink_vars, "no PAYLINK_ variable found at all: the parser is broken"
    unknown = {var: sorted(where) for var, where in paylink_vars.items() if var not in SETTINGS_ENV}
    assert not unknown, f"not fields of consumer.runtime.settings.Settings: {unknown}"


def test_config_map_values_are_valid_settings() -> None:
    """The ConfigMap's values pass Settings' own validation (types, bounds)."""
    data = config_map_data()
    values = {
        name: data[f"PAYLINK_{name.upper()}"] for name in Settings.model_fields if f"PAYLINK_{name.upper()}" in data
    }
    Settings.model_validate(values)


# ---------------------------------------------------------------------------------------------------------
# Probes and ports


@pytest.mark.parametrize("component", sorted(METRICS_PORTS))
def test_k8s_probes_match_the_metrics_port(component: str) -> None:
    deployment = deployment_for(component)
    [container] = pod_spec(deployment)["containers"]
    argv = [*container.get("command", []), *container.get("args", [])]
    assert paylink_subcommand(argv) == component
    port = metrics_port_arg(argv)
    assert port == METRICS_PORTS[component], f"{component}: --metrics-port {port}"

    declared = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
    assert port in declared.values(), f"{component}: containerPort {declared} lacks {port}"

    def probe_port(probe: dict[str, Any]) -> int:
        value = probe["httpGet"]["port"]
        return int(declared[value]) if isinstance(value, str) else int(value)

    expected_paths = {"readinessProbe": "/readyz", "livenessProbe": "/healthz", "startupProbe": "/healthz"}
    for kind in ("readinessProbe", "livenessProbe"):
        assert kind in container, f"{component} has no {kind}"
    for kind, path in expected_paths.items():
        if kind in container:
            probe = container[kind]
            assert probe["httpGet"]["path"] == path, f"{component} {kind}"
            assert probe_port(probe) == port, f"{component} {kind} probes another port"

    annotations = deployment["spec"]["template"]["metadata"].get("annotations", {})
    if "prometheus.io/port" in annotations:
        assert int(annotations["prometheus.io/port"]) == port


@pytest.mark.parametrize("component", sorted(METRICS_PORTS))
def test_compose_healthchecks_match_the_metrics_port(component: str) -> None:
    service = compose()["services"][component]
    argv = compose_command(service)
    assert paylink_subcommand(argv) == component
    port = metrics_port_arg(argv)
    assert port == METRICS_PORTS[component]
    check = " ".join(str(part) for part in service["healthcheck"]["test"])
    assert f"127.0.0.1:{port}/healthz" in check or f"localhost:{port}/healthz" in check, check
    assert "curl" not in check and "wget" not in check, "the slim image has neither curl nor wget"
    if "expose" in service:
        assert str(port) in [str(e) for e in service["expose"]], f"{component} exposes {service['expose']}"


def test_dockerfile_healthcheck_probes_healthz_with_python() -> None:
    healthcheck = final_stage().last("HEALTHCHECK")
    assert healthcheck, "the runtime stage has no HEALTHCHECK"
    assert "CMD" in healthcheck
    command = healthcheck.split("CMD", 1)[1].strip()
    argv = exec_form(command)
    assert argv[0] in {"python", "python3", "/opt/venv/bin/python"}, argv
    assert "/healthz" in command
    assert "curl" not in command and "wget" not in command
    compile(argv[argv.index("-c") + 1], "<healthcheck>", "exec")  # it is valid Python
    exposed = {int(p.split("/")[0]) for args in final_stage().all("EXPOSE") for p in args.split()}
    assert set(METRICS_PORTS.values()) <= exposed


# ---------------------------------------------------------------------------------------------------------
# Dockerfile


def test_dockerfile_is_multi_stage_on_slim_python() -> None:
    _, stages = dockerfile_stages()
    names = {stage.name for stage in stages}
    assert len(stages) >= 3
    assert "emulators" in names, "the emulators target is missing"
    assert final_stage().base.startswith("python:3.11-slim"), final_stage().base
    for stage in stages:
        if stage.base not in names:
            assert image_is_pinned(stage.base), f"unpinned base image {stage.base}"


def test_runtime_stage_is_non_root_with_paylink_entry_point() -> None:
    stage = final_stage()
    user = stage.last("USER")
    assert user, "the final stage sets no USER"
    assert user.split(":")[0] not in {"root", "0"}, f"USER {user} is root"
    entrypoint = stage.last("ENTRYPOINT")
    assert entrypoint and exec_form(entrypoint) == ["paylink"], entrypoint
    cmd = stage.last("CMD")
    assert cmd and paylink_subcommand(exec_form(cmd)) in CLI_COMMANDS


def test_emulators_stage_is_non_root() -> None:
    [stage] = [s for s in dockerfile_stages()[1] if s.name == "emulators"]
    user = stage.last("USER")
    assert user and user.split(":")[0] not in {"root", "0"}


def _stage_lineage(stages: list[Stage], stage: Stage) -> list[Stage]:
    by_name = {s.name: s for s in stages if s.name}
    lineage = [stage]
    while lineage[-1].base in by_name:
        lineage.append(by_name[lineage[-1].base])
    return lineage


def test_runtime_installs_only_the_runtime_package_with_constraints() -> None:
    _, stages = dockerfile_stages()
    runtime = stages[-1]
    sources = [
        re.search(r"--from=(\S+)", args).group(1)  # type: ignore[union-attr]
        for args in runtime.all("COPY")
        if "--from=" in args
    ]
    assert len(sources) == 1, f"the runtime stage copies from {sources}, expected one venv stage"
    by_name = {s.name: s for s in stages if s.name}
    lineage = _stage_lineage(stages, by_name[sources[0]])
    runs = [args for stage in lineage for args in stage.all("RUN")]
    assert any(re.search(r"pip install -c constraints\.txt \.(\s|$)", run) for run in runs), runs
    for run in runs:
        assert "[dev]" not in run, f"the runtime venv gets the dev extras: {run}"
        for install in re.findall(r"pip install ([^&|;]*)", run):
            assert "-c constraints.txt" in install, f"unconstrained install: {install}"
    # The emulators carry the dev extras.
    emulator_lineage = _stage_lineage(stages, by_name["emulators"])
    emulator_sources = [
        re.search(r"--from=(\S+)", args).group(1)  # type: ignore[union-attr]
        for stage in emulator_lineage
        for args in stage.all("COPY")
        if "--from=" in args
    ]
    emulator_runs = [
        args
        for name in emulator_sources
        for stage in _stage_lineage(stages, by_name[name])
        for args in stage.all("RUN")
    ]
    assert any("'.[dev]'" in run or '".[dev]"' in run for run in emulator_runs), emulator_runs


def test_dockerignore_admits_exactly_what_the_dockerfile_copies() -> None:
    lines = [line.strip() for line in DOCKERIGNORE.read_text().splitlines()]
    rules = [line for line in lines if line and not line.startswith("#")]
    assert rules[0] == "*", ".dockerignore should be an allow-list starting with `*`"
    allowed = [rule[1:].rstrip("/") for rule in rules if rule.startswith("!")]
    for stage in dockerfile_stages()[1]:
        for args in stage.all("COPY"):
            if "--from=" in args:
                continue
            *sources, _dest = [w for w in args.split() if not w.startswith("--")]
            for source in sources:
                source = source.rstrip("*").rstrip("/")
                assert source in allowed, f"COPY {source} is excluded by .dockerignore"
                matches = list(ROOT.glob(source + "*"))
                assert matches or source == "README.md", f"COPY {source}: no such path in the repo"
    for secret in (".env", ".venv", ".local", ".git"):
        assert secret not in allowed


# ---------------------------------------------------------------------------------------------------------
# Images


def test_every_image_is_pinned_to_a_tag() -> None:
    images = [str(svc["image"]) for svc in compose()["services"].values() if "image" in svc]
    images += [str(container["image"]) for _, container in workload_containers()]
    images += [
        stage.base for stage in dockerfile_stages()[1] if stage.base not in {s.name for s in dockerfile_stages()[1]}
    ]
    assert len(images) >= 8
    unpinned = [image for image in images if not image_is_pinned(image)]
    assert not unpinned, f"images without a tag (or with `latest`): {unpinned}"


def test_compose_runs_kafka_4_and_mongodb_8() -> None:
    services = compose()["services"]
    assert services["kafka"]["image"].startswith("apache/kafka:4.")
    assert services["mongodb"]["image"].startswith("mongo:8.")


def test_compose_builds_name_dockerfile_stages() -> None:
    _, stages = dockerfile_stages()
    names = {stage.name for stage in stages}
    for name, service in compose()["services"].items():
        build = service.get("build")
        if build:
            assert build["dockerfile"] == "deploy/Dockerfile", name
            assert (COMPOSE.parent / build["context"]).resolve() == ROOT, name
            assert build.get("target") in names, f"{name}: no stage {build.get('target')!r}"
    # The paylink services run the final stage, the one a plain `docker build` makes and deploys.
    for name, service in paylink_compose_services().items():
        assert service["build"]["target"] == stages[-1].name, name


def test_every_compose_service_without_build_has_an_image() -> None:
    for name, service in compose()["services"].items():
        assert "image" in service or "build" in service, name


# ---------------------------------------------------------------------------------------------------------
# Commands


def test_commands_are_paylink_cli_commands() -> None:
    seen = set()
    for name, service in paylink_compose_services().items():
        if "entrypoint" in service:
            assert service["entrypoint"] in (["paylink"], "paylink"), name
        sub = paylink_subcommand(compose_command(service))
        assert sub in CLI_COMMANDS, f"compose {name}: paylink {sub}"
        seen.add(sub)
    for doc, container in workload_containers():
        if "command" in container:
            assert container["command"][0] == "paylink", container["command"]
        sub = paylink_subcommand([*container.get("command", []), *container.get("args", [])])
        assert sub in CLI_COMMANDS, f"{doc['kind']} {doc['metadata']['name']}: paylink {sub}"
        seen.add(sub)
    assert {"worker", "relay", "topics create"} <= seen
    # Commands quoted in comments (`... run --rm worker publish --file ...`, `paylink status`).
    for path in MANIFEST_FILES:
        text = path.read_text()
        for match in re.findall(r"run --rm (?:worker|relay) (\w+(?: create)?)", text):
            assert match in CLI_COMMANDS, f"{path.name}: paylink {match}"


def test_compose_topology() -> None:
    services = compose()["services"]
    for name in ("kafka", "mongodb", "stripe-emulator", "shortener-emulator", "topics", "worker", "relay"):
        assert name in services, f"compose lacks {name}"
    assert paylink_subcommand(compose_command(services["topics"])) == "topics create"
    assert services["topics"].get("restart", "no") == "no"
    mongo = services["mongodb"]
    command = compose_command(mongo)
    assert command[command.index("--replSet") + 1] == "rs0"
    check = " ".join(map(str, mongo["healthcheck"]["test"]))
    assert "rs.initiate(" in check
    for name in paylink_compose_services():
        uri = compose_environment(services[name])["PAYLINK_MONGODB_URI"]
        assert uri.startswith("mongodb://mongodb:27017/") and "replicaSet=rs0" in uri, uri
        assert compose_environment(services[name])["PAYLINK_KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"


def test_compose_depends_on_conditions_hold() -> None:
    services = compose()["services"]
    for name, service in services.items():
        depends = service.get("depends_on") or {}
        assert isinstance(depends, dict), f"{name}: use depends_on with conditions"
        for target, spec in depends.items():
            assert target in services, f"{name} depends on unknown {target}"
            condition = spec.get("condition")
            if condition == "service_healthy":
                assert "healthcheck" in services[target], f"{name} waits for {target}'s health: it has none"
            elif condition == "service_completed_successfully":
                assert services[target].get("restart", "no") == "no", f"{target} is no one-shot"
            else:
                assert condition == "service_started", f"{name} -> {target}: {condition}"
    for name in ("worker", "relay"):
        depends = services[name]["depends_on"]
        assert depends["topics"]["condition"] == "service_completed_successfully"
        assert depends["mongodb"]["condition"] == "service_healthy"
    for emulator in ("stripe-emulator", "shortener-emulator"):
        assert services["worker"]["depends_on"][emulator]["condition"] == "service_healthy"
    assert services["topics"]["depends_on"]["kafka"]["condition"] == "service_healthy"


def test_compose_one_shots_are_awaited() -> None:
    """`docker compose up --wait` exits non-zero on a finished one-shot unless a running service waits for
    it with `service_completed_successfully` (docker/compose#10596)."""
    services = compose()["services"]
    # A service in a profile (the demo) is not started by a plain `up`: nothing needs to wait for it.
    one_shots = {name for name, svc in services.items() if svc.get("restart") == "no" and not svc.get("profiles")}
    assert {"topics", "crm-seed"} <= one_shots
    awaited = {
        target
        for svc in services.values()
        if svc.get("restart") != "no"
        for target, spec in (svc.get("depends_on") or {}).items()
        if spec.get("condition") == "service_completed_successfully"
    }
    assert one_shots <= awaited, f"one-shots no running service waits for: {one_shots - awaited}"


def test_emulator_modules_exist() -> None:
    referenced = set()
    for path in MANIFEST_FILES:
        referenced |= set(re.findall(r"\bdeploy\.local\.emulators\.\w+", path.read_text()))
    assert {p.rsplit(".", 1)[1] for p in referenced} >= EMULATOR_MODULES
    missing = sorted(p for p in referenced if not (ROOT / f"{p.replace('.', '/')}.py").is_file())
    assert not missing, f"referenced emulator modules missing from the repo: {missing}"


def test_compose_emulators_listen_on_all_interfaces() -> None:
    services = compose()["services"]
    for name, port in (("stripe-emulator", 12111), ("shortener-emulator", 12180)):
        argv = compose_command(services[name])
        assert argv[argv.index("--host") + 1] == "0.0.0.0", name
        assert int(argv[argv.index("--port") + 1]) == port, name
        assert f"{port}/_emulator/health" in " ".join(services[name]["healthcheck"]["test"])
    for service in paylink_compose_services().values():
        env = compose_environment(service)
        assert env["PAYLINK_STRIPE_API_BASE"] == "http://stripe-emulator:12111"
        assert env["PAYLINK_SHORTENER_URL"] == "http://shortener-emulator:12180/shorten"


# ---------------------------------------------------------------------------------------------------------
# Scaling, replicas, shutdown


def test_keda_scales_the_worker_on_lag_up_to_the_partitions() -> None:
    [scaled] = k8s_objects("ScaledObject")
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    spec = scaled["spec"]
    assert spec["scaleTargetRef"]["name"] == deployment_for("worker")["metadata"]["name"]
    partitions = Settings.model_fields["topic_partitions"].default
    assert spec["maxReplicaCount"] == partitions
    assert int(setting("topic_partitions")) == partitions, "the ConfigMap's partitions differ from KEDA's max"
    assert 1 <= spec.get("minReplicaCount", 0) <= spec["maxReplicaCount"]
    [trigger] = spec["triggers"]
    assert trigger["type"] == "kafka"
    meta = trigger["metadata"]
    assert meta["consumerGroup"] == setting("consumer_group")
    assert meta["topic"] == setting("requests_topic")
    assert meta["bootstrapServers"] == setting("kafka_bootstrap_servers")
    assert int(meta["lagThreshold"]) > 0
    assert str(meta.get("allowIdleConsumers", "false")).lower() == "false"
    # KEDA owns the worker's replica count.
    assert "replicas" not in deployment_for("worker")["spec"]


def test_worker_rollout_never_surges() -> None:
    """The worker's /readyz needs assigned partitions: at maxReplicaCount (= partitions) a surge pod would get
    none, never turn ready, and stall the rollout."""
    strategy = deployment_for("worker")["spec"]["strategy"]
    assert strategy["type"] == "Recreate" or strategy["rollingUpdate"]["maxSurge"] in (0, "0%")


def test_relay_runs_two_replicas() -> None:
    assert deployment_for("relay")["spec"]["replicas"] == 2


def test_every_deployment_has_a_disruption_budget() -> None:
    budgets = k8s_objects("PodDisruptionBudget")
    for deployment in k8s_objects("Deployment"):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        covering = [pdb for pdb in budgets if pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()]
        assert len(covering) == 1, f"{deployment['metadata']['name']}: {len(covering)} budgets"
        spec = covering[0]["spec"]
        assert "minAvailable" in spec or "maxUnavailable" in spec
    relay_budget = next(p for p in budgets if p["metadata"]["name"] == "paylink-relay")["spec"]
    assert relay_budget.get("minAvailable") == 1 or relay_budget.get("maxUnavailable") == 1


def test_deployment_selectors_match_their_pods() -> None:
    for deployment in k8s_objects("Deployment"):
        selector = deployment["spec"]["selector"]["matchLabels"]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items(), deployment["metadata"]["name"]


@pytest.mark.parametrize("component", sorted(METRICS_PORTS))
def test_grace_period_outlasts_the_drain(component: str) -> None:
    grace = pod_spec(deployment_for(component))["terminationGracePeriodSeconds"]
    assert grace > drain_timeout_s(), f"{component}: {grace}s <= drain {drain_timeout_s()}s"
    service = compose()["services"][component]
    drain = float(compose_environment(service).get("PAYLINK_DRAIN_TIMEOUT_S", drain_timeout_s()))
    assert duration_s(service["stop_grace_period"]) > drain


def test_workloads_have_resources_and_run_locked_down() -> None:
    for doc, container in workload_containers():
        where = f"{doc['kind']} {doc['metadata']['name']}"
        resources = container.get("resources", {})
        assert resources.get("requests", {}).get("memory") and resources.get("requests", {}).get("cpu"), where
        assert resources.get("limits", {}).get("memory"), where
        pod = pod_spec(doc)
        assert pod.get("securityContext", {}).get("runAsNonRoot") is True, where
        assert pod["securityContext"].get("runAsUser", 1) != 0, where
        assert container.get("securityContext", {}).get("allowPrivilegeEscalation") is False, where
        assert pod.get("automountServiceAccountToken") is False, where


# ---------------------------------------------------------------------------------------------------------
# Secrets


def test_no_secret_values_in_the_files() -> None:
    for path in [*MANIFEST_FILES, DOCKERIGNORE]:
        found = STRIPE_KEY.findall(path.read_text())
        assert not found, f"{path.relative_to(ROOT)} holds Stripe key material"


def test_secret_manifests_hold_no_data() -> None:
    for doc in k8s_objects("Secret"):
        assert not doc.get("data") and not doc.get("stringData"), f"Secret {doc['metadata']['name']} has data"


def test_secret_settings_come_only_from_secret_refs() -> None:
    assert {"PAYLINK_STRIPE_API_KEY", "PAYLINK_SHORTENER_TOKEN", "PAYLINK_MONGODB_URI"} <= SECRET_SETTINGS
    leaked = SECRET_SETTINGS & set(config_map_data())
    assert not leaked, f"secrets in the ConfigMap: {leaked}"
    for _doc, container in workload_containers():
        for entry in container.get("env", []):
            if entry["name"] in SECRET_SETTINGS:
                assert "value" not in entry, f"{entry['name']} has a literal value"
                ref = entry["valueFrom"]["secretKeyRef"]
                assert ref["name"] == SECRET_NAME and ref["key"], entry
        for source in container.get("envFrom", []):
            assert "secretRef" not in source or source["secretRef"]["name"] == SECRET_NAME

    def secret_refs(component: str) -> set[str]:
        [container] = pod_spec(deployment_for(component))["containers"]
        return {e["name"] for e in container.get("env", []) if "secretKeyRef" in e.get("valueFrom", {})}

    assert secret_refs("worker") == {
        "PAYLINK_STRIPE_API_KEY",
        "PAYLINK_SHORTENER_TOKEN",
        "PAYLINK_MONGODB_URI",
    }
    # Least privilege: the relay never sees Stripe or shortener credentials.
    assert secret_refs("relay") == {"PAYLINK_MONGODB_URI"}
    # Compose: credentials only by interpolation from the caller's environment, never literally.
    for name, service in compose()["services"].items():
        for var, value in compose_environment(service).items():
            if var in SECRET_SETTINGS - {"PAYLINK_MONGODB_URI"}:
                assert value.startswith("${"), f"compose {name}: {var} set literally"


# ---------------------------------------------------------------------------------------------------------
# paylink webhooks


def test_cli_commands_are_the_parsers() -> None:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert {command.split()[0] for command in CLI_COMMANDS} <= set(sub.choices)


def webhooks_container() -> dict[str, Any]:
    [container] = pod_spec(deployment_for("webhooks"))["containers"]
    return dict(container)


def test_k8s_webhooks_serve_their_port_and_probe_it() -> None:
    deployment = deployment_for("webhooks")
    container = webhooks_container()
    argv = [*container.get("command", []), *container.get("args", [])]
    assert paylink_subcommand(argv) == "webhooks"
    port = int(setting("webhooks_port"))
    assert port == WEBHOOKS_PORT
    declared = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
    assert port in declared.values(), f"containerPort {declared} lacks PAYLINK_WEBHOOKS_PORT {port}"
    expected_paths = {"readinessProbe": "/readyz", "livenessProbe": "/healthz", "startupProbe": "/healthz"}
    for kind, path in expected_paths.items():
        probe = container[kind]["httpGet"]
        assert probe["path"] == path, kind
        assert (declared[probe["port"]] if isinstance(probe["port"], str) else probe["port"]) == port, kind
    annotations = deployment["spec"]["template"]["metadata"].get("annotations", {})
    assert int(annotations.get("prometheus.io/port", port)) == port


def test_k8s_webhooks_run_two_replicas_behind_a_service() -> None:
    deployment = deployment_for("webhooks")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] in (0, "0%")
    budget = k8s_object("PodDisruptionBudget", "paylink-webhooks")["spec"]
    assert budget.get("minAvailable") == 1 or budget.get("maxUnavailable") == 1
    service = k8s_object("Service", "paylink-webhooks")["spec"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["selector"].items() <= labels.items()
    declared = {p.get("name"): p["containerPort"] for p in webhooks_container()["ports"]}
    for port in service["ports"]:
        target = port["targetPort"]
        assert (declared.get(target) if isinstance(target, str) else target) == WEBHOOKS_PORT, port


def test_webhooks_grace_period_outlasts_their_drain() -> None:
    drain = float(setting("webhooks_drain_s"))
    assert pod_spec(deployment_for("webhooks"))["terminationGracePeriodSeconds"] > drain
    service = compose()["services"]["webhooks"]
    compose_drain = float(compose_environment(service).get("PAYLINK_WEBHOOKS_DRAIN_S", drain))
    assert duration_s(service["stop_grace_period"]) > compose_drain


def test_webhooks_get_only_mongodb_and_the_signing_secrets() -> None:
    refs = {e["name"] for e in webhooks_container().get("env", []) if "secretKeyRef" in e.get("valueFrom", {})}
    assert refs == {"PAYLINK_MONGODB_URI", "PAYLINK_STRIPE_WEBHOOK_SECRETS"}
    env = compose_environment(compose()["services"]["webhooks"])
    assert env["PAYLINK_STRIPE_WEBHOOK_SECRETS"].startswith("${PAYLINK_STRIPE_WEBHOOK_SECRETS")
    for name in ("worker", "relay"):
        [container] = pod_spec(deployment_for(name))["containers"]
        assert "PAYLINK_STRIPE_WEBHOOK_SECRETS" not in {e["name"] for e in container.get("env", [])}, name


def test_compose_webhooks_healthcheck_and_port() -> None:
    service = compose()["services"]["webhooks"]
    assert paylink_subcommand(compose_command(service)) == "webhooks"
    port = int(compose_environment(service).get("PAYLINK_WEBHOOKS_PORT", WEBHOOKS_PORT))
    check = " ".join(str(part) for part in service["healthcheck"]["test"])
    assert f"127.0.0.1:{port}/healthz" in check, check
    assert "curl" not in check and "wget" not in check
    assert any(str(p).endswith(f":{port}") for p in service.get("ports", [])), service.get("ports")
    assert service["depends_on"]["mongodb"]["condition"] == "service_healthy"


def test_the_ingress_example_is_tls_to_the_webhook_path_only() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert not any(str(r).startswith("examples") for r in kustomization["resources"])
    [ingress] = k8s_example_objects("Ingress")
    spec = ingress["spec"]
    tls_hosts = {host for entry in spec["tls"] for host in entry["hosts"]}
    assert all(entry.get("secretName") for entry in spec["tls"])
    service = k8s_object("Service", "paylink-webhooks")["spec"]
    for rule in spec["rules"]:
        assert rule["host"] in tls_hosts, f"{rule['host']} without TLS: Stripe needs HTTPS"
        for path in rule["http"]["paths"]:
            # Only the webhook path is public: /metrics, /healthz and /readyz stay in the cluster.
            assert path["path"] == WEBHOOK_PATH and path["pathType"] == "Exact", path
            backend = path["backend"]["service"]
            assert backend["name"] == "paylink-webhooks"
            assert backend["port"].get("name") in {p.get("name") for p in service["ports"]} or backend["port"].get(
                "number"
            ) in {p["port"] for p in service["ports"]}
    body_limit = ingress["metadata"].get("annotations", {}).get("nginx.ingress.kubernetes.io/proxy-body-size")
    if body_limit:
        assert body_limit == f"{MAX_BODY_BYTES // (1024 * 1024)}m"


def test_compose_demo_is_make_demo_against_the_running_services() -> None:
    """`docker compose --profile demo run --rm demo` runs deploy/local/demo.py with the flags it accepts,
    after the worker and relay are healthy, from a Dockerfile stage that has the demo's files; the
    emulator calls its webhooks by the service's hostname."""
    demo = compose()["services"]["demo"]
    assert demo["profiles"] == ["demo"] and demo.get("restart") == "no"
    assert f"FROM emulators AS {demo['build']['target']}" in DOCKERFILE.read_text()
    args = demo_arguments(compose_command(demo))
    assert args.use_running and args.webhooks_host == demo["hostname"]
    assert str(args.log_dir) in demo.get("tmpfs", []), "the demo's logs go to a writable tmpfs"
    for name in ("worker", "relay", "stripe-emulator"):
        assert demo["depends_on"][name]["condition"] == "service_healthy"
    copied = re.findall(r"^COPY (deploy/local/demo\S*) (deploy/local/demo\S*) ", DOCKERFILE.read_text(), re.M)
    assert copied == [("deploy/local/demo.py", "deploy/local/demo_lifecycle.py")]
