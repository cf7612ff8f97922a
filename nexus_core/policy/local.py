"""Who is asking and which policy applies: OS identities, the trusted policy path, one decision.

No click and no CLI here: agents (``nexus_core.plugin.policy_decision``) use it as well.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

from nexus_core.policy import SYSTEM_POLICY
from nexus_core.policy.model import Decision, load_policy

#: The variable that points at another policy file (honoured only for a root-owned file).
POLICY_VARIABLE = "NEXUS_POLICY"


def identity() -> tuple[str, tuple[str, ...]]:
    """This process's user name and the names of its groups (via NSS: local or directory groups)."""
    import pwd

    try:
        entry = pwd.getpwuid(os.getuid())
    except KeyError:
        return str(os.getuid()), ()
    return entry.pw_name, groups_of(entry.pw_name, entry.pw_gid)


def groups_of(user: str, gid: int | None = None) -> tuple[str, ...]:
    """The group names of ``user`` (empty for a name the system does not know, e.g. a certificate's)."""
    import grp
    import pwd

    if gid is None:
        try:
            gid = pwd.getpwnam(user).pw_gid
        except KeyError:
            return ()
    names: list[str] = []
    try:
        ids = os.getgrouplist(user, gid)
    except OSError:
        ids = [gid]
    for g in ids:
        try:
            names.append(grp.getgrgid(g).gr_name)
        except KeyError:
            names.append(str(g))
    return tuple(dict.fromkeys(names))


def trusted(path: str) -> str:
    """Why ``path`` cannot be trusted as a policy ("" when it can): root must own it, and
    neither its group nor others may write it."""
    try:
        st = os.stat(path)
    except OSError as exc:
        return f"cannot read it ({exc.strerror or exc})"
    if st.st_uid != 0:
        return "it is not owned by root"
    if st.st_mode & 0o022:
        return "its group or others can write it"
    return ""


def policy_path(warn: Callable[[str], None] | None = None) -> str | None:
    """The policy in force: ``NEXUS_POLICY`` when trusted, else the system policy if it exists."""
    override = os.environ.get(POLICY_VARIABLE)
    if override:
        why = trusted(override)
        if not why:
            return override
        if warn is not None:
            warn(f"nexus: warning: {POLICY_VARIABLE}={override} ignored: {why}")
    return SYSTEM_POLICY if os.path.exists(SYSTEM_POLICY) and declares_access(SYSTEM_POLICY) else None


def declares_access(path: str) -> bool:
    """Whether ``path`` holds an access policy, not only the plugin allowlist (``allow = [...]``,
    docs/plugins/policy.md) that may share ``/etc/nexus/policy.toml``. A file that cannot be
    read or parsed counts (the policy's loader then refuses, naming the problem: fail closed)."""
    import tomllib

    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return True
    return any(key != "allow" for key in data)


def policy_decision(user: str, action: str, task: str = "", targets: Sequence[str] = ()) -> Decision | None:
    """The policy's decision for ``user`` (their Unix groups count, if the system knows them), or
    None when no policy is in force. An untrusted or broken system policy raises
    :class:`~nexus_core.policy.model.PolicyError` (callers refuse: fail closed)."""
    from nexus_core.policy.model import PolicyError

    path = policy_path()
    if path is None:
        return None
    why = trusted(path)
    if why:
        raise PolicyError(f"the policy cannot be trusted: {why}", path, f"chown root:root {path}; chmod 644 {path}")
    return load_policy(path).decide(user, groups_of(user), action, task, targets)
