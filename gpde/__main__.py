"""`python -m gpde` runs the command-line interface."""

import sys

from .app import main

sys.exit(main())
