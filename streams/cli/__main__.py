"""`python -m streams.cli`: the `kpiwatch` command."""

import sys

from streams.cli import main

sys.exit(main())
