"""`python -m tokenmill ...` = the `tokenmill` command (handy under `ray job submit`)."""

from tokenmill.cli import entry

entry()
