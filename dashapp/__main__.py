"""Run the command line: `python -m dashapp check | probe`."""

import sys

from dashapp.cli import main

sys.exit(main())
