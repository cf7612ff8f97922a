"""The built-in pre-flight checks: the configuration (always first) and local files.

Both are local: they never contact a host. Host checks (connectivity, authentication,
sudo) come from the executor plugins (``nexus-ssh``).
"""

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
    order = 0

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
        if len(plan.order) > 1:
            results.append(CheckResult(self.category, "ok", "Dependencies resolved: " + " -> ".join(plan.order)))
        return results


class LocalFilesCheck(PreflightCheck):
    """Local paths the plan refers to exist.

    What is checked is only what Nexus can know for sure without running anything: the
    ``cwd=`` of commands that run on the local machine (and, once the DSL has them, the
    sources of uploads). Paths inside a command's text are not guessed at. A missing ``cwd``
    is a warning, not a failure: an earlier task may create it.
    """

    name = "local-files"
    category = "Local Files"
    order = 90

    def run(self, plan: Any, options: Mapping[str, Any]) -> list[CheckResult]:
        """One result per distinct local directory."""
        seen: dict[str, str] = {}
        for name in plan.order:
            for hp in plan.tasks[name].hosts:
                if not hp.host.is_local:
                    continue
                for cmd in hp.commands:
                    if cmd.cwd and cmd.cwd not in seen:
                        seen[cmd.cwd] = name
        results = []
        for path, task in seen.items():
            shown = os.path.relpath(path, plan.root) if path.startswith(plan.root) else path
            if os.path.isdir(path):
                results.append(CheckResult(self.category, "ok", f"{shown}/ exists (cwd of {task})"))
            else:
                results.append(
                    CheckResult(
                        self.category,
                        "warn",
                        f"{shown}/ does not exist (cwd of {task})",
                        blocking=False,
                        hint="Fine if an earlier task creates it; otherwise fix cwd= in the nexusfile",
                        exit_code=2,
                    )
                )
        return results


@hookimpl
def nexus_preflight_checks() -> list[type[PreflightCheck]]:
    """The built-in configuration and local files checks."""
    return [ConfigurationCheck, LocalFilesCheck]
