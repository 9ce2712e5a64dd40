"""``python -m crmkit`` runs the ``crmkit`` command."""

import sys

from crmkit.cli import main

sys.exit(main())
