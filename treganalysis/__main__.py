"""``python -m treganalysis``: the same as the ``treganalysis`` command."""

from .cli import run

run()
