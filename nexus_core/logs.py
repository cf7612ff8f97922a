"""Logging on stderr: ``--log-level`` and ``--log-format text|json``."""

from __future__ import annotations

import json
import logging
import sys
import time

LOGGER = logging.getLogger("nexus")
LEVELS = ("debug", "info", "warning", "error")


class _Redacting(logging.Formatter):
    """Every secret value in a log line (message or traceback) becomes ``***``."""

    def format(self, record: logging.LogRecord) -> str:
        from nexus_core.secrets.redact import redact

        return redact(super().format(record))


class _JsonFormatter(_Redacting):
    def format(self, record: logging.LogRecord) -> str:
        data = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + "Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        from nexus_core.secrets.redact import redact

        return redact(json.dumps(data, ensure_ascii=False))


def setup(level: str = "warning", fmt: str = "text") -> logging.Logger:
    """Configure the ``nexus`` logger to write to stderr at ``level`` in ``fmt``."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(_Redacting("nexus: %(levelname)s: %(message)s"))
    LOGGER.handlers[:] = [handler]
    LOGGER.setLevel(getattr(logging, level.upper(), logging.WARNING))
    LOGGER.propagate = False
    return LOGGER


def debug_enabled() -> bool:
    """True when ``--log-level debug`` was asked for (tracebacks are shown then)."""
    return LOGGER.isEnabledFor(logging.DEBUG)
