"""``python -m floe_cli``: the ``floe`` command for callers that run it through an interpreter (tests, benchmarks)."""

import sys

from floe_cli.main import main

sys.exit(main())
