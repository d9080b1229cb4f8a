"""``python -m sluiceway``: the same command line as ``sluiceway``."""

import sys

from .cli import main

sys.exit(main())
