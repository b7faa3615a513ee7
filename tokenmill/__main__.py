"""`python -m tokenmill ...` = the `tokenmill` command (handy under `ray job submit`)."""

import sys

from tokenmill.cli import main

sys.exit(main())
