"""``python -m vcohort.cli``."""

import sys

from vcohort.cli import entry

sys.exit(entry())
