"""``python -m nexus_core`` runs the CLI."""

from nexus_core.cli import entry

entry()
