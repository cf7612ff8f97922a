"""The ``nexus`` command line (rich-click), one module per command group.

- :mod:`~nexus_core.cli.application`: the kit every command uses (the ``main`` group, the
  ``entry`` point, :func:`load`, :func:`make_plan`, :func:`fail`, :class:`Exit`, option
  decorators); plugin commands use it too.
- :mod:`~nexus_core.cli.run`: ``run`` (and ``--dry-run``); :mod:`~nexus_core.cli.running`:
  what a person sees around a run (resume questions, failures, summary).
- :mod:`~nexus_core.cli.project`: ``validate``, ``list``, ``init``.
- :mod:`~nexus_core.cli.preflight`: ``preflight``.
- :mod:`~nexus_core.cli.state`: ``resume``, ``pipelines``.
- :mod:`~nexus_core.cli.exec`: ``exec`` (one ad-hoc command on hosts).
- :mod:`~nexus_core.cli.hosts`: ``hosts list`` (plugins add ``hosts`` subcommands).
- :mod:`~nexus_core.cli.tui`: ``tui`` (the live dashboard of a recorded run; ``nexus_core.tui``).
- :mod:`~nexus_core.cli.info`: ``version``, ``plugins``, ``completion``, ``plugin new``.
- :mod:`~nexus_core.cli.secret`: ``secret set|get|list|delete|rotate-key|init|unlock``.
- :mod:`~nexus_core.cli.artifacts`: ``artifacts`` (files tasks handed on).

Command modules are imported on demand: ``nexus run`` loads ``run`` and what it uses, not
``secret`` or ``tui``.

The run itself is click-free: :mod:`nexus_core.session`.
"""

from __future__ import annotations

# Each command module registers its commands on ``main`` when imported, and ``main`` imports
# a command's module only when that command is looked up (``application.BUILTIN_COMMANDS``).
from nexus_core.cli.application import Exit, ExitCode, entry, fail, load, main, make_plan

# The rest of the kit (option decorators, open_store, show_problems...) is in application.
__all__ = ["Exit", "ExitCode", "entry", "fail", "load", "main", "make_plan"]
