"""``python -m wsbind``: the ``wsbind`` command (see :mod:`wsbind.cli`)."""

import sys

from .cli import main

sys.exit(main())
