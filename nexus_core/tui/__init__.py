"""The live dashboard (``nexus run --tui``, ``nexus tui``), on Textual: the ``tui`` extra.

This package's ``__init__`` imports nothing heavy: :func:`tui_refusal` decides whether the
dashboard may start at all, and only then are :mod:`nexus_core.tui.app` (Textual) and its
neighbours imported. ``pip install 'nexus-core[tui]'`` brings Textual.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Mapping
from typing import IO

__all__ = ["INSTALL_HINT", "textual_installed", "tui_refusal"]

INSTALL_HINT = "pip install 'nexus-core[tui]'"


def textual_installed() -> bool:
    """True when Textual can be imported (the ``tui`` extra is installed)."""
    return importlib.util.find_spec("textual") is not None


def _isatty(stream: IO[str] | None) -> bool:
    try:
        return stream is not None and stream.isatty()
    except (AttributeError, ValueError):
        return False


def tui_refusal(
    *,
    fmt: str = "text",
    environ: Mapping[str, str] | None = None,
    stdin: IO[str] | None = None,
    stdout: IO[str] | None = None,
    stderr: IO[str] | None = None,
    check_installed: bool = True,
) -> str:
    """Why the dashboard cannot start here ('' when it can).

    Never under ``CI``, with ``TERM=dumb``, without a terminal on stdin, stdout and stderr
    (Textual draws on stderr: ``2>file`` would fill the file with the screen), with
    ``--format json``, or without Textual installed.
    """
    environ = os.environ if environ is None else environ
    if environ.get("CI"):
        return "CI is set"
    if environ.get("TERM") == "dumb":
        return "TERM=dumb"
    if fmt == "json":
        return "--format json prints events for scripts"
    if not _isatty(sys.stdout if stdout is None else stdout):
        return "stdout is not a terminal"
    if not _isatty(sys.stdin if stdin is None else stdin):
        return "stdin is not a terminal"
    if not _isatty(sys.stderr if stderr is None else stderr):
        return "stderr is not a terminal (the dashboard draws there)"
    if check_installed and not textual_installed():
        return f"Textual is not installed ({INSTALL_HINT})"
    return ""
