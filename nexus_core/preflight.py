"""The built-in pre-flight checks: the configuration (always first) and local files.

Both are local: they never contact a host. Host checks (connectivity, authentication,
sudo) come from the executor plugins (``nexus-ssh``). They are registered by
``nexus_core.builtins`` and imported only when pre-flight runs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from nexus_core.api import CheckResult, PreflightCheck

if TYPE_CHECKING:
    from nexus_core.plan import Plan
    from nexus_core.registry import Registry


class ConfigurationCheck(PreflightCheck):
    """What validation established, then what it did not check.

    Validation proves the nexusfile parsed, its references and groups resolve and it has no
    cycle (reported as facts). This check then checks, against the registry: the config
    values as the run will use them, command-line overrides (``-u``, ``-i``...) included,
    which the nexusfile's validation did not see; and that the executor and strategy of
    every task load (plugin classes are imported on first use, so a broken plugin fails
    here, naming its distribution, before any host is touched).
    """

    def run(self, plan: Plan, options: Mapping[str, Any]) -> list[CheckResult]:
        """The validation facts, then one result per transport and strategy the plan uses."""
        name = os.path.basename(plan.nexusfile)
        results = [
            CheckResult(self.category, "ok", f"{name} parsed successfully"),
            CheckResult(self.category, "ok", "No circular dependencies"),
            CheckResult(self.category, "ok", "All task references valid"),
            CheckResult(self.category, "ok", "All host groups defined"),
        ]
        registry: Registry | None = options.get("registry")
        transports = list(dict.fromkeys(hp.host.transport for t in plan.tasks.values() for hp in t.hosts))
        strategies = list(dict.fromkeys(t.strategy for t in plan.tasks.values()))
        broken: list[tuple[str, str]] = []
        if registry is not None:
            for key, value in plan.config.items():
                spec = registry.config_options.get(key)
                why = spec.problem(value) if spec is not None else None
                if why:
                    broken.append((f"config: {why}", "- fix the value in the nexusfile or on the command line"))
            fix = "- reinstall or upgrade that plugin (see `nexus plugins`)"
            for transport in transports:
                if transport in registry.executors and (why := registry.executors.problem(transport)):
                    broken.append((why, fix))
            for strategy in strategies:
                if strategy in registry.strategies and (why := registry.strategies.problem(strategy)):
                    broken.append((why, fix))
        for message, hint in broken:
            results.append(CheckResult(self.category, "fail", message, hint=hint, exit_code=2))
        remote = sorted(set(transports) - {"local"})
        if remote and not broken:
            results.append(CheckResult(self.category, "ok", "Executors installed for " + ", ".join(remote)))
        if len(plan.order) > 1:
            # phase by phase: tasks of one phase run in parallel, "[test, lint] -> build"
            steps = [p[0] if len(p) == 1 else "[" + ", ".join(p) + "]" for p in plan.phases if p]
            results.append(CheckResult(self.category, "ok", "Dependencies resolved: " + " -> ".join(steps)))
        return results


class LocalFilesCheck(PreflightCheck):
    """Local paths the plan refers to exist.

    What is checked is only what Nexus can know for sure without running anything: the
    ``cwd=`` of commands that run on the local machine (and, once the DSL has them, the
    sources of uploads). Paths inside a command's text are not guessed at. A missing ``cwd``
    is a warning, not a failure: an earlier task may create it.
    """

    def run(self, plan: Plan, options: Mapping[str, Any]) -> list[CheckResult]:
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
