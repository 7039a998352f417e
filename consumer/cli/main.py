"""``paylink``: the one entry point for operators and integrators (``paylink COMMAND --help``).

Parses the command line (``consumer.cli.parser``), reads the settings, runs the chosen command and maps
what went wrong to an exit code: 2 for bad usage or settings, 3 when a dependency is unreachable.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

from consumer.cli.output import EXIT_FAILED, EXIT_UNREACHABLE, EXIT_USAGE, command_logging, quiet_logging
from consumer.cli.parser import Command, CommandRef, build_parser
from consumer.ports import Unreachable
from consumer.runtime.settings import SettingsError, load_settings, unknown_variables
from domain.errors import RetryableError


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)  # exits 2 on bad usage, 0 after --help
    for warning in unknown_variables():  # first: a typo may be why a setting below is refused
        print(f"paylink: warning: {warning}", file=sys.stderr)
    try:
        settings = load_settings()
    except SettingsError as error:
        for problem in error.problems:
            print(f"paylink: invalid setting {problem}", file=sys.stderr)
        return EXIT_USAGE
    except ValueError as error:  # a value pydantic-settings could not even decode (e.g. bad JSON)
        print(f"paylink: invalid settings: {error}", file=sys.stderr)
        return EXIT_USAGE
    if args.command in ("replay", "cancel", "reconcile"):
        command_logging(settings)
    elif args.command not in ("worker", "relay", "webhooks", "schema"):
        quiet_logging(settings)
    command = resolve(args.run)
    try:
        return command(args, settings)
    except KeyboardInterrupt:
        return EXIT_FAILED
    except _unreachable_types() as error:
        message = getattr(error, "message", None) or str(error) or type(error).__name__
        print(f"paylink: a dependency is unreachable: {message}", file=sys.stderr)
        return EXIT_UNREACHABLE


def resolve(ref: CommandRef) -> Command:
    """The function ``"module:function"`` names, in ``consumer.cli``."""
    module, _, function = ref.partition(":")
    command: Command = getattr(importlib.import_module(f"consumer.cli.{module}"), function)
    return command


def _unreachable_types() -> tuple[type[BaseException], ...]:
    # Imported only when a command failed: importing aiokafka and pymongo at the top cost every command,
    # even `paylink --help`, about 0.2 s (python -X importtime); by the time a command fails on them,
    # they are loaded anyway.
    from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError
    from pymongo.errors import ConnectionFailure

    return Unreachable, RetryableError, KafkaConnectionError, KafkaTimeoutError, ConnectionFailure, TimeoutError
