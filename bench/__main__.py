"""`python -m bench ...` is `vidtrack-bench ...`."""

import sys

from bench.run import cli

sys.exit(cli())
