# paylink — `make test` from a fresh clone installs and starts everything the tests need.
SHELL := /bin/bash
PY := .venv/bin/python
LOCAL := .local
KAFKA_LIBS := $(LOCAL)/kafka/libs
FERRETDB := $(LOCAL)/bin/ferretdb
STACK := $(PY) deploy/local/stack.py

# The tests find the stack through the same variables the services read.
export PAYLINK_KAFKA_BOOTSTRAP_SERVERS ?= localhost:9092
export PAYLINK_MONGODB_URI ?= mongodb://localhost:27017/paylink
export PAYLINK_STRIPE_API_BASE ?= http://127.0.0.1:12111
export PAYLINK_SHORTENER_URL ?= http://127.0.0.1:12180/shorten

PYTEST_ARGS ?=

# The Python the venv is made from: the first of python3.14 … python3.11, python3 on the PATH that is
# 3.11 or newer (Linux and macOS alike); `make PYTHON=/path/to/python3.x setup` picks another.
PYTHON ?= $(shell for p in python3.14 python3.13 python3.12 python3.11 python3; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
	&& { command -v $$p; break; }; done)

.PHONY: go-tools setup test unit check services-up services-down services-status demo bench reliability soak faketime mutation clean

setup: .venv/.installed $(KAFKA_LIBS)/.resolved $(FERRETDB)

.venv/.installed: pyproject.toml constraints.txt
	@test -n "$(PYTHON)" || { echo "make: no Python 3.11 or newer on the PATH (python3.14 … python3.11, python3); install one or set PYTHON=" >&2; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "make: $(PYTHON) is older than 3.11" >&2; exit 1; }
	$(PYTHON) -m venv .venv
	.venv/bin/pip install -q --upgrade pip
	.venv/bin/pip install -q -c constraints.txt -e '.[dev]'
	touch $@

# Kafka's broker classpath, resolved from Maven Central by a tiny pom (no tarball).
$(KAFKA_LIBS)/.resolved: deploy/local/kafka/pom.xml
	rm -rf $(KAFKA_LIBS)
	mvn -q -B -f deploy/local/kafka/pom.xml dependency:copy-dependencies \
	    -DincludeScope=runtime -DoutputDirectory=$(abspath $(KAFKA_LIBS))
	touch $@

# FerretDB embedded in a small Go program (its own command panics when `go install`ed), built with a
# one-line patch that lets SQLite use the _id index (see build.sh).
$(FERRETDB): deploy/local/ferretdb/main.go deploy/local/ferretdb/go.mod deploy/local/ferretdb/go.sum \
             deploy/local/ferretdb/build.sh deploy/local/ferretdb/paylink_atomic.go.txt deploy/local/ferretdb/paylink_in.go.txt
	deploy/local/ferretdb/build.sh $(abspath $(FERRETDB))

# Go tools the tests drive (tracing, alert rules, network faults), each pinned by a small module in
# deploy/local/tools/NAME and built once from the Go module proxy into .local/bin.
GO_TOOLS := $(LOCAL)/bin/jaeger $(LOCAL)/bin/promtool $(LOCAL)/bin/toxiproxy-server
$(LOCAL)/bin/jaeger: deploy/local/tools/jaeger/go.mod deploy/local/tools/jaeger/go.sum deploy/local/tools/build.sh
	deploy/local/tools/build.sh jaeger $(abspath $@)
$(LOCAL)/bin/promtool: deploy/local/tools/promtool/go.mod deploy/local/tools/promtool/go.sum deploy/local/tools/build.sh
	deploy/local/tools/build.sh promtool $(abspath $@)
$(LOCAL)/bin/toxiproxy-server: deploy/local/tools/toxiproxy/go.mod deploy/local/tools/toxiproxy/go.sum deploy/local/tools/build.sh
	deploy/local/tools/build.sh toxiproxy $(abspath $@)
go-tools: $(GO_TOOLS)

# TRACING=1 adds Jaeger v2 (OTLP/HTTP :4318, UI and query API :16686); point the processes at it with
# OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4318 (docs/operations.md, "Tracing").
services-up: setup $(if $(TRACING),$(LOCAL)/bin/jaeger)
	$(STACK) up $(if $(TRACING),--with-jaeger)

services-down:
	@if [ -x $(PY) ]; then $(STACK) down; else echo "no .venv: nothing was started"; fi

services-status:
	$(STACK) status

# The Go tools are test dependencies: the tracing test starts its own Jaeger from .local/bin/jaeger.
test: services-up $(GO_TOOLS) faketime
	$(PY) -m pytest -q $(PYTEST_ARGS)

unit: .venv/.installed
	$(PY) -m pytest -q tests/unit $(PYTEST_ARGS)

check: .venv/.installed
	.venv/bin/ruff check .
	.venv/bin/ruff format --check domain adapters consumer paylink examples tests deploy/local
	.venv/bin/mypy --strict domain adapters consumer paylink examples deploy/local tests

# The whole pipeline on the local stack: seeds a tenant, runs worker and relay, prints a table.
demo: services-up
	$(PY) -m deploy.local.demo

# Ratios measured in one run against baselines of the same run; writes .local/bench.json.
bench: setup
	$(PY) -m tests.benchmarks.run

# Crash, restart, fault-storm, network-fault (Toxiproxy) and skewed-clock (faketime) scenarios on a private
# stack; exits non-zero on any violation.
reliability: setup $(GO_TOOLS) faketime
	$(PY) -m tests.reliability.run

# Twenty minutes of steady load with a low rate of faults; fails on a growing trend (writes .local/soak/*/soak.{csv,png}).
soak: setup $(GO_TOOLS)
	$(PY) -m tests.reliability.soak

# Debian's faketime (skewed clocks for one process): installed when missing, else the scenario is skipped loudly.
faketime:
	@command -v faketime >/dev/null || (apt-get install -y faketime || (apt-get update && apt-get install -y faketime) \
		|| sudo apt-get install -y faketime) \
		|| echo "!!! faketime could not be installed: the skewed_clocks scenario will be skipped !!!"

# Mutation testing of domain/ against tests/unit (config: [tool.mutmut] in pyproject.toml; work dir mutants/),
# then the grade: exits non-zero below 95% killed overall or 90% in any module (tests/mutation/score.py).
mutation: .venv/.installed
	rm -rf mutants
	.venv/bin/mutmut run --max-children 2
	$(PY) tests/mutation/score.py

clean: services-down
	rm -rf $(LOCAL) .venv
