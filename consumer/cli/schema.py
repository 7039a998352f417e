"""``paylink schema``: the event contract for integrators, generated from the models that enforce it.

- the JSON Schemas of every event: the request, the two results and the five lifecycle events;
- ``--asyncapi``: the AsyncAPI 3.0 document of both topics (``consumer.cli.asyncapi``);
  ``deploy/asyncapi.yaml`` is this document for the default settings (a unit test keeps it equal);
- ``--settings``: the table of every ``PAYLINK_*`` setting (``docs/operations.md`` holds a copy,
  checked the same way).
"""

from __future__ import annotations

import argparse
import json

from pydantic import SecretStr

from consumer.cli.asyncapi import all_json_schemas, asyncapi_yaml, default_asyncapi_yaml
from consumer.runtime.settings import Settings, TracingSettings


def settings_table() -> str:
    """A Markdown table of every setting: variable, default, meaning."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = field.default
        shown = (
            ("a local test value (set it)" if default.get_secret_value() else "empty (set it)")
            if isinstance(default, SecretStr)
            else "unset"
            if default is None
            else f"`{default}`"
        )
        meaning = (field.description or "").replace("|", "\\|")
        rows.append(f"| `PAYLINK_{name.upper()}` | {shown} | {meaning} |")
    for name, field in TracingSettings.model_fields.items():  # the OpenTelemetry variables paylink reads
        shown = "unset" if field.default is None else f"`{str(field.default).lower()}`"
        meaning = (field.description or "").replace("|", "\\|")
        rows.append(f"| `OTEL_{name.upper()}` | {shown} | {meaning} |")
    return "\n".join(rows) + "\n"


def schema_command(args: argparse.Namespace, settings: Settings) -> int:
    if args.asyncapi:
        print(asyncapi_yaml(settings), end="")
    elif args.settings:
        print(settings_table(), end="")
    else:
        print(json.dumps(all_json_schemas(), indent=2))
    return 0


if __name__ == "__main__":  # python -m consumer.cli.schema > deploy/asyncapi.yaml (the default settings)
    print(default_asyncapi_yaml(), end="")
