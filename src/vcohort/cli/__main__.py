"""``python -m vcohort.cli``."""

import sys

from vcohort.cli import main

sys.exit(main())
