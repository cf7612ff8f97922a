"""The built-in pre-flight check: the configuration (always first, always local)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import pluggy

from nexus_core.api import CheckResult, PreflightCheck

hookimpl = pluggy.HookimplMarker("nexus")


class ConfigurationCheck(PreflightCheck):
    """Reports what validation established: parsed, acyclic, references and groups valid."""

    name = "configuration"
    category = "Configuration"

    def run(self, plan: Any, options: Mapping[str, Any]) -> list[CheckResult]:
        """A plan exists only for a valid nexusfile, so these are facts, not guesses."""
        name = os.path.basename(plan.nexusfile)
        remote = sorted({hp.host.transport for t in plan.tasks.values() for hp in t.hosts} - {"local"})
        results = [
            CheckResult(self.category, "ok", f"{name} parsed successfully"),
            CheckResult(self.category, "ok", "No circular dependencies"),
            CheckResult(self.category, "ok", "All task references valid"),
            CheckResult(self.category, "ok", "All host groups defined"),
        ]
        if remote:
            results.append(CheckResult(self.category, "ok", "Executors installed for " + ", ".join(remote)))
        return results


@hookimpl
def nexus_preflight_checks() -> list[type[PreflightCheck]]:
    """The built-in configuration check."""
    return [ConfigurationCheck]
