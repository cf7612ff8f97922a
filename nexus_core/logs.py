"""Logging on stderr: ``--log-level`` and ``--log-format text|json``."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from typing import Any

LOGGER = logging.getLogger("nexus")
LEVELS = ("debug", "info", "warning", "error")
#: True when the level was asked for (``--log-level``), not the default.
_asked = False


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


def setup(level: str = "warning", fmt: str = "text", asked: bool = False) -> logging.Logger:
    """Configure the ``nexus`` logger to write to stderr at ``level`` in ``fmt`` (``asked``:
    the user chose the level, so the run's milestones are logged, :func:`milestones`)."""
    global _asked
    _asked = asked
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


def milestones() -> Callable[[Any], None] | None:
    """An event subscriber logging a run's milestones, or None when nobody asked for logs.

    ``info``: the run and each task starting and ending, each connection made (an event
    audited as ``auth.success``, whatever the transport), an executor's info messages.
    ``warning``: each retry, each connection that failed (``auth.failure``), each signal.
    Only with ``--log-level`` given (or a level below warning): the default output already
    shows retries and failures in its own form. Not at ``debug``, which logs every event whole.
    """
    if not (_asked or LOGGER.isEnabledFor(logging.INFO)) or LOGGER.isEnabledFor(logging.DEBUG):
        return None
    info, warn = LOGGER.info, LOGGER.warning

    def log(e: Any) -> None:
        name = e.name
        audit = getattr(type(e), "audit", "")
        if name == "pipeline.start":
            n = len(e.hosts)
            info("run %s started: %s (%d host%s)", e.run_id, ", ".join(e.tasks) or "nothing to run", n, "s"[: n != 1])
        elif name == "pipeline.stop":
            info("run %s %s in %.1fs (exit code %d)", e.run_id, e.status, e.duration, e.exit_code)
        elif name == "task.start":
            info("task %s started on %s", e.task, _hosts(e.hosts))
        elif name == "task.stop":
            why = f": {e.reason}" if e.reason else ""
            info("task %s %s in %.1fs%s", e.task, e.status, e.duration, why)
        elif name == "task.retry":
            warn("task %s on %s failed (%s): attempt %d of %d in %.2fs", e.task, e.host, e.reason, e.attempt,
                 e.max_attempts, e.delay)  # fmt: skip
        elif name == "pipeline.interrupt":
            warn("%s received: starting nothing new", e.signal)
        elif audit == "auth.success":
            took = getattr(e, "duration", 0.0)
            info("connected to %s%s", getattr(e, "host", "?"), f" in {took:.2f}s" if took else "")
        elif audit == "auth.failure":
            warn("connection to %s failed: %s", getattr(e, "host", "?"), getattr(e, "reason", ""))
        elif name == "log" and e.level == "info":  # warnings and errors: the output prints them already
            info("%s", e.message)

    return log


def _hosts(hosts: tuple[str, ...]) -> str:
    shown = ", ".join(hosts[:5])
    return shown + (f" (+{len(hosts) - 5} more)" if len(hosts) > 5 else "") if hosts else "no host"
