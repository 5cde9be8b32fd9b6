"""``python -m rave_viewer`` runs the ``rave`` command."""

import sys

from .cli import main

sys.exit(main())
