"""``python -m treganalysis``: the same as the ``treganalysis`` command."""

import sys

from .cli import main

sys.exit(main())
