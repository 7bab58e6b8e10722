"""`python -m jobs ...` is `vidtrack ...` (e.g. for `ray job submit -- python -m jobs run ...`)."""

import sys

from jobs.cli import main

sys.exit(main())
