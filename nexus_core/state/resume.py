"""Deciding how to resume an interrupted run: what is done, where to continue, what changed."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from nexus_core.model import HostKey
from nexus_core.plan import Plan
from nexus_core.state.store import RunRecord

#: Command fields that must be unchanged for a resume to be safe (line numbers may move).
_COMPARED = ("cmd", "sudo", "user", "timeout", "retries", "retry_delay", "continue_on_error", "env", "cwd")


@dataclass
class ResumePoint:
    """Where a resumed run starts: finished tasks and hosts are skipped, others continue."""

    run_id: str
    done_tasks: set[str] = field(default_factory=set)
    done_hosts: set[tuple[str, str]] = field(default_factory=set)
    start_at: dict[tuple[str, str], int] = field(default_factory=dict)
    #: (task, host, index) of commands that were running when the run stopped: ask the host.
    uncertain: set[tuple[str, str, int]] = field(default_factory=set)
    #: Handlers notified but not run yet, by (task, host label): they run at the end of the task.
    notified: dict[tuple[str, str], tuple[str, ...]] = field(default_factory=dict)
    #: How the resumed run ended, as work done in it is described ("done before the failure").
    ended_by: str = "interruption"

    def in_progress(self) -> set[str]:
        """Tasks that had started on some host but not finished."""
        return {t for t, _ in self.start_at} | {t for t, _, _ in self.uncertain}


def recorded_labels(record: RunRecord) -> dict[HostKey, str]:
    """The label each host (by identity) had in the stored run's plan."""
    labels: dict[HostKey, str] = {}
    for task in record.plan.get("tasks", {}).values():
        for entry in task.get("hosts", ()):
            host = entry["host"]
            labels.setdefault(_key(host), host.get("label") or _label(host))
    return labels


def resume_point(record: RunRecord, plan: Plan) -> ResumePoint:
    """What the stored run reached, mapped onto the new plan (hosts matched by identity).

    The point is keyed by the new plan's labels; the stored rows are read under the
    label each host had in the stored run.
    """
    point = ResumePoint(record.id, ended_by="failure" if record.status == "failed" else "interruption")
    old_labels = recorded_labels(record)
    pending = record.pending_handlers()
    for name, tp in plan.tasks.items():
        task_row = record.tasks.get(name)
        if task_row and task_row["status"] == "ok":
            point.done_tasks.add(name)
            continue
        for hp in tp.hosts:
            label = hp.host.label
            old = old_labels.get(hp.host.key, label)
            if (name, old) in pending:
                point.notified[(name, label)] = pending[(name, old)]
            host_row = record.hosts.get((name, old))
            if host_row and host_row["status"] == "ok":
                point.done_hosts.add((name, label))
                continue
            if host_row is None or host_row["status"] == "skipped":
                continue  # never started on this host (a strategy left it out): run it from the start
            first = 0
            for index in range(len(hp.commands)):
                row = record.commands.get((name, old, index))
                if row is not None and row["status"] == "ok":
                    first = index + 1
                    continue
                # Not recorded as finished: it may have been running when the run stopped, or
                # when the connection to its host was lost (it may have ended since, or still run).
                if row is None or row["status"] in ("running", "interrupted", "unreachable", "error"):
                    point.uncertain.add((name, label, index))
                break
            point.start_at[(name, label)] = first
    return point


def plan_changes(record: RunRecord, plan: Plan, point: ResumePoint) -> list[str]:
    """Why the remaining work of ``plan`` differs from what the stored run planned (empty: safe)."""
    old_tasks: dict[str, Any] = record.plan.get("tasks", {})
    reasons: list[str] = []
    for name, tp in plan.tasks.items():
        if name in point.done_tasks:
            continue
        old = old_tasks.get(name)
        if old is None:
            reasons.append(f"task {name!r} is new")
            continue
        old_hosts = {_key(h["host"]): h["commands"] for h in old["hosts"]}
        now_keys = {hp.host.key for hp in tp.hosts}
        for h in old["hosts"]:  # a host left out with work left: that work would never be done
            if _key(h["host"]) in now_keys:
                continue
            label = h["host"].get("label") or _label(h["host"])
            row = record.hosts.get((name, label))
            if row is None or row["status"] != "ok":
                reasons.append(f"task {name!r} no longer runs on {label}, where it has not finished")
        for hp in tp.hosts:
            label = hp.host.label
            if (name, label) in point.done_hosts:
                continue
            start = point.start_at.get((name, label), 0)
            before = old_hosts.get(hp.host.key)
            if before is None:
                reasons.append(f"task {name!r} now also runs on {label}")
                continue
            now = [_compared(c.to_dict()) for c in hp.commands[start:]]
            then = [_compared(c) for c in before[start:]]
            if now != then:
                reasons.append(f"task {name!r} on {label}: {_what_changed(now, then, start)}")
    for name in old_tasks:
        if name not in plan.tasks and record.tasks.get(name, {}).get("status") != "ok":
            reasons.append(f"task {name!r} is gone from the plan")
    reasons.extend(_relabelled(record, plan, point))
    return reasons


def _relabelled(record: RunRecord, plan: Plan, point: ResumePoint) -> list[str]:
    """Hosts with work left whose label changed since the stored run (its rows and status files use the old one)."""
    old_labels = recorded_labels(record)
    reasons: list[str] = []
    holders: dict[str, str] = {}
    remaining = {
        hp.host.key: hp.host
        for name in plan.order
        if name not in point.done_tasks
        for hp in plan.tasks[name].hosts
        if (name, hp.host.label) not in point.done_hosts
    }
    for host in remaining.values():
        old = old_labels.get(host.key)
        if old is None:
            continue
        if old != host.label:
            reasons.append(f"host {host.label} was recorded as {old}")
        if old in holders:
            reasons.append(f"hosts {holders[old]} and {host.label} were recorded as one host ({old})")
        holders.setdefault(old, host.label)
    return reasons


def _key(host: dict[str, Any]) -> HostKey:
    return (str(host.get("transport", "ssh")), host.get("user"), str(host["name"]), host.get("port"))


def _label(host: dict[str, Any]) -> str:
    name, port = host["name"], host.get("port")
    if port is None:
        return str(name)
    return f"[{name}]:{port}" if ":" in name else f"{name}:{port}"


def _what_changed(now: list[dict[str, Any]], then: list[dict[str, Any]], start: int) -> str:
    """Which of the commands a resume would run differ from the stored run's (numbered from 1)."""
    changed = [start + i + 1 for i, (a, b) in enumerate(zip(now, then, strict=False)) if a != b]
    if len(now) != len(then):
        more = "added" if len(now) > len(then) else "removed"
        return f"commands were {more} (it had {start + len(then)}, now {start + len(now)})" + (
            f"; command #{changed[0]} changed" if changed else ""
        )
    if len(changed) == 1:
        return f"command #{changed[0]} changed"
    return "commands " + ", ".join(f"#{n}" for n in changed) + " changed"


def _compared(command: dict[str, Any]) -> dict[str, Any]:
    from nexus_core.secrets.redact import redact_data

    # The stored plan shows secret values as ***: compare the new plan the same way.
    return redact_data({k: command.get(k) for k in _COMPARED})


#: Hosts named one by one in the resume prompt for a task's hosts in one state; more are counted.
_HOSTS_NAMED = 3


def describe(record: RunRecord, point: ResumePoint, plan: Plan) -> list[str]:
    """Lines for the resume prompt: completed, in progress (per host) and pending work."""
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.started))
    how = "crashed" if record.display_status == "crashed" else "was interrupted"
    lines = [f"Pipeline '{record.pipeline}' (started {started}, run {record.id}) {how}."]
    done = [n for n in plan.order if n in point.done_tasks]
    if done:
        lines.append("  Completed:   " + ", ".join(done))
    progress: list[str] = []
    for name in plan.order:
        if name in point.done_tasks:
            continue
        # Each host's state, hosts in the same state together (a fleet reads as a few parts).
        states: dict[str, list[str]] = {}
        for hp in plan.tasks[name].hosts:
            label = hp.host.label
            if (name, label) in point.done_hosts:
                states.setdefault("done", []).append(label)
            elif (name, label) in point.start_at:
                start = point.start_at[(name, label)]
                states.setdefault(f"{start}/{len(hp.commands)} commands done", []).append(label)
        for state, labels in states.items():
            if len(labels) <= _HOSTS_NAMED:
                progress.extend(f"{name} on {label}: {state}" for label in labels)
            else:
                from nexus_core.output.alike import listed

                progress.append(f"{name} on {len(labels)} hosts ({listed(labels, _HOSTS_NAMED)}): {state}")
    if progress:
        lines.append("  In progress: " + "; ".join(progress))
    pending = [n for n in plan.order if n not in point.done_tasks and n not in point.in_progress()]
    if pending:
        lines.append("  Pending:     " + ", ".join(pending))
    return lines
