"""The core's own registrations, made through the same hooks as any plugin's.

Classes are named as ``"module:Class"``: the local executor and the pre-flight checks are
imported when a plan uses them, not at every start. (The built-in strategies are
registered by ``nexus_core.strategies`` itself: their task options are needed to validate
any nexusfile, so that module is read at every start anyway.)
"""

from __future__ import annotations

from collections.abc import Sequence

from nexus_core.kinds import Registration
from nexus_core.plugin import hookimpl


@hookimpl
def nexus_executors() -> Sequence[Registration]:
    """The ``local`` transport."""
    return [Registration("local", "nexus_core.executors.local:LocalExecutor")]


@hookimpl
def nexus_preflight_checks() -> Sequence[Registration]:
    """The configuration check (always first) and the local files check (last)."""
    return [
        Registration(
            "configuration", "nexus_core.preflight:ConfigurationCheck", {"category": "Configuration", "order": 0}
        ),
        Registration("local-files", "nexus_core.preflight:LocalFilesCheck", {"category": "Local Files", "order": 90}),
    ]


@hookimpl
def nexus_secret_backends() -> Sequence[Registration]:
    """The ``local`` backend: the encrypted store files."""
    return [Registration("local", "nexus_core.secrets.local:LocalBackend")]
