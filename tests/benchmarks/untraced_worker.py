"""``python -m consumer.cli`` with ``consumer.tracing``'s code paths switched off (``tracing.enabled``):
the baseline of the tracing benchmark (``tests/benchmarks/tracing_cost.py``), paylink as it would run
without any tracing code. Not a production switch: the processes always keep the API's no-op paths."""

import sys

from consumer import tracing
from consumer.cli.main import main

tracing.enabled = False
sys.exit(main())
