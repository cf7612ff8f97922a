"""Compliance controls: RBAC policy, approvals, change windows and dry-run enforcement.

Nothing here is imported by a run unless a policy is in force (``/etc/nexus/policy.toml``,
see :mod:`nexus_core.policy.model`) or the nexusfile uses one of these features
(``@task(approval=...)``, ``@task(change_window=...)``, ``change_window(...)``,
``require_dry_run(...)``). The CLI's gate is :mod:`nexus_core.policy.gate`.
"""

from __future__ import annotations

#: The system policy the CLI enforces (root-owned; see docs/compliance.md).
SYSTEM_POLICY = "/etc/nexus/policy.toml"
