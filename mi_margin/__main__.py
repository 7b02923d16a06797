"""``python -m mi_margin`` runs the command line."""

import sys

from mi_margin.cli import main

sys.exit(main())
