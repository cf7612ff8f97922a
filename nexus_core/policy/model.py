"""The policy file: roles with ``can``/``cannot`` rules, inheritance, assignments, compliance rules.

A policy is TOML::

    [roles.viewer]
    can = ["list", "status", "logs"]

    [roles.deployer]
    inherit = ["viewer"]
    can = [{ action = "run", tasks = ["build", "deploy*"], on = ["staging"] }]

    [roles.admin]
    can = ["*"]

    [[assign]]
    user = "alice"
    role = "admin"

    [[assign]]
    group = "devops"          # a Unix group, or a directory group the host resolves
    roles = ["deployer"]

Decisions: a matching ``cannot`` rule of any of the user's roles denies; else a matching
``can`` rule allows; else nothing allows it (denied). Every decision names its rule.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from nexus_core.policy.windows import ChangeWindow, WindowError

#: The actions a rule can name (``admin`` and ``*`` grant every action).
ACTIONS = ("list", "status", "logs", "run", "approve", "admin", "*")
#: Seconds an approval request stays valid, and a dry run counts, unless the policy says otherwise.
DEFAULT_TTL = 3600


class PolicyError(Exception):
    """A policy file that cannot be used: what is wrong, where (file:line) and how to fix it."""

    def __init__(self, message: str, where: str, hint: str = "") -> None:
        super().__init__(f"{where}: {message}")
        self.message = message
        self.where = where
        self.hint = hint


@dataclass(frozen=True)
class Rule:
    """One ``can`` or ``cannot`` rule: an action, task patterns and host-group/host patterns."""

    action: str
    tasks: tuple[str, ...] = ("*",)
    on: tuple[str, ...] = ("*",)
    name: str = ""
    line: int = 0

    def matches(self, action: str, task: str = "", targets: Sequence[str] = (), every: bool = True) -> bool:
        """True when this rule covers ``action`` on ``task`` running on ``targets``: on every
        one of them (``every``: a ``can`` rule must allow each place the task runs), or on any
        (a ``cannot`` rule: one forbidden place is enough)."""
        if self.action not in ("*", "admin", action):
            return False
        if action != "run" or self.action in ("*", "admin"):
            return not task or any(fnmatch.fnmatchcase(task, p) for p in self.tasks)
        if task and not any(fnmatch.fnmatchcase(task, p) for p in self.tasks):
            return False
        covered = (any(fnmatch.fnmatchcase(t, p) for p in self.on) for t in targets or ("local",))
        return all(covered) if every else any(covered)

    def describe(self) -> str:
        """``roles.deployer.can[1] (run tasks=build,deploy* on=staging)``."""
        scope = self.action
        if self.tasks != ("*",):
            scope += " tasks=" + ",".join(self.tasks)
        if self.on != ("*",):
            scope += " on=" + ",".join(self.on)
        return f"{self.name} ({scope})"


@dataclass(frozen=True)
class Role:
    """A role: rules of its own, and the roles it inherits from."""

    name: str
    inherit: tuple[str, ...] = ()
    can: tuple[Rule, ...] = ()
    cannot: tuple[Rule, ...] = ()
    line: int = 0


@dataclass(frozen=True)
class Assignment:
    """Roles given to a user or to a group (exactly one of them is set)."""

    roles: tuple[str, ...]
    user: str = ""
    group: str = ""
    line: int = 0

    def describe(self) -> str:
        """``user alice`` or ``group devops``."""
        return f"user {self.user}" if self.user else f"group {self.group}"


@dataclass(frozen=True)
class Decision:
    """The answer to one permission check and why."""

    allowed: bool
    user: str
    action: str
    target: str
    rule: str
    roles: tuple[str, ...] = ()
    via: tuple[str, ...] = ()

    def explain(self) -> str:
        """One sentence: allowed/denied, by which rule, through which roles."""
        verdict = "allowed" if self.allowed else "denied"
        what = f"{self.action} {self.target}".strip()
        roles = ", ".join(self.roles) or "none"
        return f"{self.user}: {what}: {verdict} by {self.rule} (roles: {roles})"


@dataclass(frozen=True)
class Policy:
    """A loaded policy file."""

    path: str
    roles: Mapping[str, Role] = field(default_factory=dict)
    assignments: tuple[Assignment, ...] = ()
    approval_tasks: tuple[str, ...] = ()
    approval_ttl: float = DEFAULT_TTL
    approvals_db: str = ""
    windows: Mapping[str, ChangeWindow] = field(default_factory=dict)
    window_tasks: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    dry_run_tasks: tuple[str, ...] = ()
    dry_run_ttl: float = DEFAULT_TTL
    clock_override: bool = False

    def roles_of(self, user: str, groups: Sequence[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The user's roles (inherited ones included, in order) and the assignments that gave them."""
        direct: list[str] = []
        via: list[str] = []
        for a in self.assignments:
            if (a.user and a.user == user) or (a.group and a.group in groups):
                via.append(f"{a.describe()} (line {a.line})")
                direct.extend(r for r in a.roles if r not in direct)
        out: list[str] = []

        def add(name: str, depth: int) -> None:
            if name in out or depth > len(self.roles) + 1:
                return
            out.append(name)
            for parent in self.roles[name].inherit if name in self.roles else ():
                add(parent, depth + 1)

        for name in direct:
            add(name, 0)
        return tuple(out), tuple(via)

    def decide(
        self,
        user: str,
        groups: Sequence[str],
        action: str,
        task: str = "",
        targets: Sequence[str] = (),
        hosts: Sequence[str] = (),
    ) -> Decision:
        """Whether ``user`` (member of ``groups``) may do ``action`` (on ``task`` and ``targets``).

        ``targets``: the groups and hosts the task's ``on=`` names; ``hosts``: where it would
        really run (its hosts' names and addresses after ``-H``, and its groups), when known.
        A ``cannot`` rule denies when any of them matches it (a production host inside a group
        of another name, or beside a harmless one, is still that host), or any target when
        ``hosts`` is not given; a ``can`` rule must cover every target.
        """
        roles, via = self.roles_of(user, groups)

        def made(ok: bool, rule: str) -> Decision:
            return Decision(ok, user, action, task, rule, roles, via)

        places = hosts or targets
        for name in roles:
            for rule in self.roles[name].cannot:  # without a task, only a rule for every task denies
                if rule.matches(action, task, places, every=False) and (task or rule.tasks == ("*",)):
                    return made(False, f"{rule.describe()} at {self.path}:{rule.line}")
        for name in roles:
            for rule in self.roles[name].can:
                if rule.matches(action, task, targets):
                    return made(True, f"{rule.describe()} at {self.path}:{rule.line}")
        why = "no role assigned" if not roles else "no rule of these roles allows it"
        return made(False, f"default deny ({why}) in {self.path}")


def load_policy(path: str) -> Policy:
    """Read and check a policy file; :class:`PolicyError` (with file:line) when it is wrong."""
    import tomllib

    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise PolicyError(
            f"cannot read the policy file ({exc.strerror or exc})", path, "check that it exists and is readable"
        ) from None
    text = raw.decode("utf-8", "replace")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = re.search(r"at line (\d+)", str(exc))
        line = found.group(1) if found else str(max(1, len(text.splitlines()))) if "end of document" in str(exc) else ""
        where = f"{path}:{line}" if line else path
        raise PolicyError(f"not valid TOML: {exc}", where, "fix the TOML syntax (https://toml.io)") from None
    return _Reader(path, text).policy(data)


class _Reader:
    """Turns parsed TOML into a :class:`Policy`, pointing at the line of each mistake."""

    def __init__(self, path: str, text: str) -> None:
        self.path = path
        self.lines = text.splitlines()

    def line(self, *needles: str) -> int:
        """The first line containing every needle (in order of preference), else 0."""
        for needle in needles:
            for i, text in enumerate(self.lines, 1):
                if needle in text:
                    return i
        return 0

    def fail(self, message: str, hint: str, *needles: str) -> PolicyError:
        line = self.line(*needles)
        return PolicyError(message, f"{self.path}:{line}" if line else self.path, hint)

    def policy(self, data: Mapping[str, Any]) -> Policy:
        from nexus_core.plugins import ACCESS_SECTIONS as known

        for key in data:
            if key == "allow":
                continue  # the plugin allowlist sharing the file (docs/plugins/policy.md)
            if key not in known:
                raise self.fail(
                    f"unknown section {key!r}",
                    "sections: " + ", ".join(sorted(known)),
                    f"[{key}]",  # its header: "role" alone is found inside "[roles.viewer]" first
                    f"[{key}.",
                    f"[[{key}]]",
                    key,
                )
        roles = {name: self.role(name, spec) for name, spec in self.table(data, "roles").items()}
        for role in roles.values():
            for parent in role.inherit:
                if parent not in roles:
                    raise self.fail(
                        f"role {role.name!r} inherits unknown role {parent!r}",
                        "define [roles." + parent + "] or fix the name",
                        f'"{parent}"',
                    )
        assigns = data.get("assign", [])
        if not isinstance(assigns, list):
            raise self.fail(
                "assign must be a list of tables", 'write [[assign]] with user = "..." and role = "..."', "assign"
            )
        assignments = tuple(self.assignment(i, a, roles) for i, a in enumerate(assigns))
        approvals = self.table(data, "approvals")
        windows_raw = self.table(data, "change_windows")
        windows: dict[str, ChangeWindow] = {}
        window_tasks: dict[str, tuple[str, ...]] = {}
        for name, spec in windows_raw.items():
            if not isinstance(spec, dict):
                raise self.fail(f"change_windows.{name} must be a table", "days, hours, timezone, tasks", name)
            extra = set(spec) - {"days", "hours", "timezone", "tasks"}
            if extra:
                raise self.fail(
                    f"change_windows.{name}: unknown key {sorted(extra)[0]!r}",
                    "keys: days, hours, timezone, tasks",
                    f"[change_windows.{name}]",
                )
            try:
                windows[name] = ChangeWindow.parse(
                    name, spec.get("days"), spec.get("hours"), spec.get("timezone", "UTC")
                )
            except WindowError as exc:
                raise self.fail(exc.message, exc.hint, f"[change_windows.{name}]") from None
            window_tasks[name] = self.patterns(spec.get("tasks", []), f"change_windows.{name}.tasks", name)
        dry = self.table(data, "require_dry_run")
        # A misspelt key here (task =, TTL =) would leave the control off without a word.
        for table, found, keys in (("approvals", approvals, ("tasks", "ttl", "database")),
                                   ("require_dry_run", dry, ("tasks", "ttl"))):  # fmt: skip
            unknown = sorted(set(found) - set(keys))
            if unknown:
                raise self.fail(f"{table}: unknown key {unknown[0]!r}", "keys: " + ", ".join(keys), f"[{table}]")
        testing = self.table(data, "testing")
        extra = set(testing) - {"clock_override"}
        if extra or not isinstance(testing.get("clock_override", False), bool):
            # a typo here must not switch the clock override on, nor leave it off without a word
            what = f"unknown key {sorted(extra)[0]!r}" if extra else "clock_override must be true or false"
            raise self.fail(f"testing: {what}", "write clock_override = true (tests only) or leave [testing] out",
                            "[testing]")  # fmt: skip
        return Policy(
            path=self.path,
            roles=roles,
            assignments=assignments,
            approval_tasks=self.patterns(approvals.get("tasks", []), "approvals.tasks", "[approvals]"),
            approval_ttl=self.seconds(approvals.get("ttl", DEFAULT_TTL), "approvals.ttl"),
            approvals_db=self.string(approvals.get("database", ""), "approvals.database"),
            windows=windows,
            window_tasks=window_tasks,
            dry_run_tasks=self.patterns(dry.get("tasks", []), "require_dry_run.tasks", "[require_dry_run]"),
            dry_run_ttl=self.seconds(dry.get("ttl", DEFAULT_TTL), "require_dry_run.ttl"),
            clock_override=testing.get("clock_override") is True,
        )

    def table(self, data: Mapping[str, Any], key: str) -> dict[str, Any]:
        value = data.get(key, {})
        if not isinstance(value, dict):
            raise self.fail(f"{key} must be a table", f"write [{key}] on a line of its own", key)
        return value

    def patterns(self, value: Any, what: str, needle: str) -> tuple[str, ...]:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(v, str) and v for v in items):
            raise self.fail(
                f"{what} must be a list of names or glob patterns, not {value!r}",
                f'{what.rsplit(".", 1)[-1]} = ["deploy", "db-*"]',
                needle,
            )
        return tuple(items)

    def seconds(self, value: Any, what: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise self.fail(
                f"{what} must be a number of seconds > 0, not {value!r}",
                f"{what.split('.')[-1]} = 3600",
                what.split(".")[-1],
            )
        return float(value)

    def string(self, value: Any, what: str) -> str:
        if not isinstance(value, str):
            raise self.fail(
                f"{what} must be a string, not {value!r}",
                'database = "/var/lib/nexus/approvals.db"',
                what.split(".")[-1],
            )
        return value

    def role(self, name: str, spec: Any) -> Role:
        header = f"[roles.{name}]"
        if not isinstance(spec, dict):
            raise self.fail(f"roles.{name} must be a table", f"write {header} with can = [...]", header)
        extra = set(spec) - {"can", "cannot", "inherit"}
        if extra:
            raise self.fail(
                f"roles.{name}: unknown key {sorted(extra)[0]!r}",
                "keys: can, cannot, inherit",
                sorted(extra)[0],
                header,
            )
        inherit = spec.get("inherit", [])
        inherit = [inherit] if isinstance(inherit, str) else inherit
        if not isinstance(inherit, list) or not all(isinstance(i, str) for i in inherit):
            raise self.fail(f"roles.{name}.inherit must be a list of role names", 'inherit = ["viewer"]', header)
        start = self.line(header)
        rules = {}
        for kind in ("can", "cannot"):
            items = spec.get(kind, [])
            if not isinstance(items, list):
                raise self.fail(f"roles.{name}.{kind} must be a list", f'{kind} = ["list", "logs"]', header)
            lines = self._item_lines(start, kind)
            rules[kind] = tuple(
                self.rule(f"roles.{name}.{kind}[{i}]", item, lines[i] if i < len(lines) else start)
                for i, item in enumerate(items)
            )
        return Role(name, tuple(inherit), rules["can"], rules["cannot"], start)

    def _item_lines(self, start: int, kind: str) -> list[int]:
        """The line of each item of the list ``kind = [...]`` of the role whose header is at
        ``start``: a rule's own line, not the first line after the header that names its action."""
        key = re.compile(rf"^\s*{kind}\s*=")
        first = next(
            (i for i in range(max(start, 1) + 1, len(self.lines) + 1) if key.match(self.lines[i - 1])),
            None,
        )
        if first is None:
            return []
        found: list[int] = []
        depth, quote = 0, ""
        for i in range(first, len(self.lines) + 1):
            text = self.lines[i - 1]
            at = text.index("=") + 1 if i == first else 0
            while at < len(text):
                ch = text[at]
                if quote:
                    if ch == "\\":
                        at += 1
                    elif ch == quote:
                        quote = ""
                elif ch == "#":
                    break
                elif ch in "\"'":
                    if depth == 1:
                        found.append(i)
                    quote = ch
                elif ch in "[{":
                    if depth == 1 and ch == "{":
                        found.append(i)
                    depth += 1
                elif ch in "]}":
                    depth -= 1
                    if depth == 0:
                        return found
                at += 1
        return found

    def rule(self, label: str, item: Any, line: int) -> Rule:
        hint = 'a rule is "list" or { action = "run", tasks = ["deploy*"], on = ["staging"] }'
        if isinstance(item, str):
            item = {"action": item}
        if not isinstance(item, dict):
            raise PolicyError(f"{label} must be an action name or a table, not {item!r}", f"{self.path}:{line}", hint)
        action = item.get("action")
        if action not in ACTIONS:
            from nexus_core.options import suggest

            close = suggest(str(action), ACTIONS)
            extra = f"; did you mean {close!r}?" if close else ""
            raise PolicyError(
                f"{label}: unknown action {action!r}{extra}", f"{self.path}:{line}", "actions: " + ", ".join(ACTIONS)
            )
        extra_keys = set(item) - {"action", "tasks", "on"}
        if extra_keys:
            raise PolicyError(
                f"{label}: unknown key {sorted(extra_keys)[0]!r}", f"{self.path}:{line}", "rule keys: action, tasks, on"
            )
        fields = {}
        for key in ("tasks", "on"):
            value = item.get(key, ["*"])
            value = [value] if isinstance(value, str) else value
            if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
                raise PolicyError(
                    f"{label}.{key} must be a list of names or glob patterns",
                    f"{self.path}:{line}",
                    f'{key} = ["deploy*"]',
                )
            fields[key] = tuple(value)
        return Rule(str(action), fields["tasks"], fields["on"], label, line)

    def assignment(self, index: int, spec: Any, roles: Mapping[str, Role]) -> Assignment:
        # the index-th [[assign]] header
        headers = [i for i, t in enumerate(self.lines, 1) if t.strip().startswith("[[assign]]")]
        line = headers[index] if index < len(headers) else self.line("assign")
        where = f"{self.path}:{line}"
        if not isinstance(spec, dict):
            raise PolicyError("each [[assign]] must be a table", where, 'user = "alice" and role = "deployer"')
        extra = set(spec) - {"user", "group", "role", "roles"}
        if extra:
            raise PolicyError(
                f"[[assign]]: unknown key {sorted(extra)[0]!r}", where, "keys: user or group, and role or roles"
            )
        user, group = spec.get("user", ""), spec.get("group", "")
        if bool(user) == bool(group) or not isinstance(user, str) or not isinstance(group, str):
            raise PolicyError(
                '[[assign]] needs exactly one of user = "NAME" or group = "NAME"',
                where,
                'user = "alice" (an OS or certificate identity) or group = "devops"',
            )
        names = spec.get("roles", spec.get("role", []))
        names = [names] if isinstance(names, str) else names
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise PolicyError('[[assign]] needs role = "NAME" or roles = [...]', where, 'role = "deployer"')
        for name in names:
            if name not in roles:
                raise PolicyError(
                    f"[[assign]] gives unknown role {name!r}", where, "roles defined: " + (", ".join(roles) or "none")
                )
        return Assignment(tuple(names), user, group, line)
