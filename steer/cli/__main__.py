"""``python -m steer.cli``."""

import sys

from steer.cli import main

sys.exit(main())
