"""``python -m edgeseg.cli``."""

import sys

from . import main

sys.exit(main())
