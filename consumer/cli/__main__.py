"""``python -m consumer.cli``: the same as the ``paylink`` script."""

import sys

from consumer.cli.main import main

sys.exit(main())
