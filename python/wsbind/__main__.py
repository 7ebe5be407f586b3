"""``python -m wsbind``: the ``wsbind`` command (see :mod:`wsbind.cli`)."""

import sys

from .cli import main

# Guarded: tools that import every module of the package (tools/declarations.py) must not run it.
if __name__ == "__main__":
    sys.exit(main())
