"""``nexus preflight``: can Nexus get an Azure token, and can each ``azure://`` host take Run Command?

For every VM of the plan on the ``azure`` transport: the VM exists, is running, and its
VM agent is ready (``Run Command`` needs it); one token request first (a failed one is
reported once, with every method tried). Nothing runs on the VMs.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from nexus_core.plugin import CheckResult, Host, PreflightCheck

CATEGORY = "Azure"


class AzurePreflight(PreflightCheck):
    """Azure authentication and Run Command availability per ``azure://`` host."""

    category = CATEGORY
    order = 20

    def run(self, plan: Any, options: Mapping[str, Any]) -> list[CheckResult]:
        """One result for the credential, then one per Azure host."""
        hosts = _azure_hosts(plan)
        if not hosts:
            return []
        from nexus_azure.arm import Arm
        from nexus_azure.errors import AzureError
        from nexus_azure.executor import AzureExecutor

        config = dict(getattr(plan, "config", {}) or {})
        arm = Arm(config)
        started = time.monotonic()
        if options.get("skip_auth"):
            return [CheckResult(CATEGORY, "skipped", "Azure authentication (skipped)", blocking=False)]
        try:
            cred = arm.credential()
            cred.get_token(f"{arm.endpoint}/.default")
        except AzureError as exc:
            return [CheckResult(CATEGORY, "fail", exc.message, hint=exc.hint, exit_code=exc.exit_code)]
        except Exception as exc:
            err = arm.error(exc, "Azure authentication")
            return [CheckResult(CATEGORY, "fail", err.message, hint=err.hint, exit_code=err.exit_code)]
        out = [
            CheckResult(
                CATEGORY, "ok", f"Azure authentication ({arm.method})", duration=time.monotonic() - started
            )
        ]
        if options.get("skip_connectivity"):
            return out
        from nexus_core.plugin import ExecutorContext

        executor = AzureExecutor(
            ExecutorContext(config=config, root=".", emit=lambda e: None, run_id="preflight"), arm
        )

        def one(host: Host) -> CheckResult:
            t0 = time.monotonic()
            try:
                t = executor.target(host)
                state, agent = _vm_state(arm, t)
            except AzureError as exc:
                return CheckResult(
                    CATEGORY,
                    "fail",
                    f"Run Command: {exc.headline}",
                    host=host.label,
                    hint=exc.hint,
                    exit_code=exc.exit_code,
                )
            took = time.monotonic() - t0
            if state != "running":
                return CheckResult(
                    CATEGORY,
                    "fail",
                    f"Run Command: VM is {state or 'in an unknown state'}",
                    host=host.label,
                    duration=took,
                    hint="start it (az vm start)",
                    exit_code=3,
                )
            if agent and agent.lower() != "ready":
                return CheckResult(
                    CATEGORY,
                    "warn",
                    f"Run Command: VM agent is {agent}",
                    host=host.label,
                    duration=took,
                    blocking=False,
                )
            return CheckResult(
                CATEGORY, "ok", "Run Command available (VM running)", host=host.label, duration=took
            )

        workers = max(1, int(options.get("parallel") or 8))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            out.extend(pool.map(one, hosts))
        return out


def _azure_hosts(plan: Any) -> list[Host]:
    seen: dict[Any, Host] = {}
    for host in getattr(plan, "hosts", None) or ():
        if getattr(host, "transport", "") == "azure":
            seen.setdefault(host.key, host)
    return list(seen.values())


def _vm_state(arm: Any, t: Any) -> tuple[str, str]:
    """(power state, VM agent status) from the VM's instance view."""
    from nexus_azure.arm import COMPUTE_API

    compute = arm.compute(t.subscription)
    if t.instance:
        view = arm.call(
            t.subscription,
            f"instance view of {t.label}",
            lambda: compute.virtual_machine_scale_set_vms.get_instance_view(
                t.resource_group, t.name, t.instance, api_version=COMPUTE_API
            ),
        )
    else:
        view = arm.call(
            t.subscription,
            f"instance view of {t.label}",
            lambda: compute.virtual_machines.instance_view(t.resource_group, t.name, api_version=COMPUTE_API),
        )
    power = ""
    for status in getattr(view, "statuses", None) or ():
        code = str(getattr(status, "code", "") or "")
        if code.lower().startswith("powerstate/"):
            power = code.split("/", 1)[1].lower()
    agent = ""
    vm_agent = getattr(view, "vm_agent", None)
    for status in getattr(vm_agent, "statuses", None) or ():
        agent = str(getattr(status, "display_status", "") or "")
    return power, agent
