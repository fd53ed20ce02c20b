"""`python -m tools.run_local`: see the package docstring."""

import sys

from .cli import main

sys.exit(main())
