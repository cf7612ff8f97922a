"""Inventory files: Nexus's TOML format and Ansible's INI and YAML inventories.

All three are read into one :class:`Inventory` (groups with hosts, child groups and
variables; hosts with their connection settings and variables). Every mistake of a file
(a syntax error with its line, a host listed twice in a group, an unknown key, a child
group that includes itself) is collected, so that one run reports them all
(:class:`InventoryError`).

The TOML format::

    user = "deploy"                 # settings for every host: user, port, tags, transport
    vars = { app = "shop" }         # variables for every host

    [groups.web]
    hosts = ["web-1", "web-2.example.com"]
    port = 2222
    tags = ["frontend"]
    vars = { tier = "front" }

    [groups.prod]
    children = ["web", "db"]

    [hosts.web-1]
    address = "10.0.0.11"           # what to connect to (default: the host's name)
    tags = ["canary"]
    vars = { role = "primary" }

Settings and variables are inherited: a group's apply to the hosts of its child groups,
a child's override its parent's, a host's own override them all; tags add up.
"""

from __future__ import annotations

import itertools
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from nexus_core.api import DiscoveredHost
from nexus_core.hosts import LABEL
from nexus_core.model import Host, Location, Problem
from nexus_core.options import safe_repr, suggest

#: Connection settings every format can give a group or a host (besides variables).
SETTINGS = ("user", "port", "tags", "transport")
HOST_KEYS = ("address", *SETTINGS, "vars")
GROUP_KEYS = ("hosts", "children", *SETTINGS, "vars")
TOP_KEYS = ("groups", "hosts", *SETTINGS, "vars")

#: Ansible's connection variables, as Nexus settings.
ANSIBLE_SETTINGS = {
    "ansible_host": "address",
    "ansible_ssh_host": "address",
    "ansible_port": "port",
    "ansible_ssh_port": "port",
    "ansible_user": "user",
    "ansible_ssh_user": "user",
    "ansible_connection": "transport",
}

#: Ansible connections that mean Nexus's default transport (that of a bare host string).
_DEFAULT_CONNECTIONS = frozenset({"smart", "paramiko", Host(name="-").transport})

_FORMATS = {
    ".toml": "toml",
    ".yml": "yaml",
    ".yaml": "yaml",
    ".json": "yaml",  # Ansible's JSON inventory is its YAML one written as JSON (YAML reads JSON)
    ".ini": "ini",
    ".cfg": "ini",
    "": "ini",
}


class InventoryError(Exception):
    """An inventory file that cannot be used: every problem found in it, each with its line."""

    def __init__(self, message: str, hint: str = "", problems: Sequence[Problem] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.problems = list(problems)


@dataclass
class Entry:
    """A group or a host of an inventory: its settings, variables and where it is written."""

    name: str
    line: int = 0
    settings: dict[str, Any] = field(default_factory=dict)
    vars: dict[str, Any] = field(default_factory=dict)
    hosts: list[str] = field(default_factory=list)
    children: list[str] = field(default_factory=list)


@dataclass
class Inventory:
    """A parsed inventory file: groups and hosts in file order."""

    path: str
    format: str
    groups: dict[str, Entry] = field(default_factory=dict)
    hosts: dict[str, Entry] = field(default_factory=dict)
    top: Entry = field(default_factory=lambda: Entry(""))

    def group_hosts(self, group: str) -> list[str]:
        """Host names of ``group`` and of its child groups (each once, in file order)."""
        seen: dict[str, None] = {}
        stack: set[str] = set()

        def walk(name: str) -> None:
            if name in stack or name not in self.groups:
                return
            stack.add(name)
            entry = self.groups[name]
            seen.update(dict.fromkeys(entry.hosts))
            for child in entry.children:
                walk(child)

        walk(group)
        return list(seen)

    def _ancestry(self) -> dict[str, list[str]]:
        """For each host, its groups from the outermost parent to the innermost child."""
        parents: dict[str, list[str]] = {}
        for name, entry in self.groups.items():
            for child in entry.children:
                parents.setdefault(child, []).append(name)

        def depth(name: str, seen: frozenset[str] = frozenset()) -> int:
            ups = [p for p in parents.get(name, []) if p not in seen]
            return 1 + max((depth(p, seen | {name}) for p in ups), default=0)

        order = {name: (0 if name == "all" else depth(name), i) for i, name in enumerate(self.groups)}
        out: dict[str, list[str]] = {}
        for name in sorted(self.groups, key=lambda n: order[n]):
            for host in self.groups[name].hosts:
                out.setdefault(host, []).append(name)
        # hosts reached through a child group inherit the child's parents too
        for host, groups in out.items():
            extra: list[str] = []
            frontier = list(groups)
            while frontier:
                g = frontier.pop()
                for p in parents.get(g, []):
                    if p not in groups and p not in extra:
                        extra.append(p)
                        frontier.append(p)
            out[host] = sorted([*groups, *extra], key=lambda n: order[n])
        return out

    def select(self, group: str | None = None) -> list[DiscoveredHost]:
        """The hosts of ``group`` (every host when None) with their settings and variables resolved."""
        names = list(self.hosts) if group is None else self.group_hosts(group)
        ancestry = self._ancestry()
        out: list[DiscoveredHost] = []
        # Hosts of the same groups share everything but their own entry: merge each set once.
        shared: dict[tuple[str, ...], tuple[dict[str, Any], dict[str, Any], list[str], list[str]]] = {}
        for name in names:
            groups = tuple(ancestry.get(name, ()))
            base = shared.get(groups)
            if base is None:
                base = shared[groups] = (*_merge([self.top, *(self.groups[g] for g in groups)]), list(groups))
            entry = self.hosts.get(name)
            if entry is not None and (entry.settings or entry.vars):
                settings, variables, tags = _merge([entry], base)
            else:
                settings, variables, tags = base[0], base[1], base[2]
            transport = str(settings.get("transport") or "")
            address = str(settings.get("address") or name)
            if transport == "local":
                address = "local"
            elif transport in _DEFAULT_CONNECTIONS:
                transport = ""
            out.append(
                DiscoveredHost(
                    address=address,
                    user=settings.get("user"),
                    port=settings.get("port"),
                    tags=tuple(tags),
                    vars=variables,
                    name=name,
                    transport=transport,
                    facts={"groups": base[3]},
                )
            )
        return out


def _merge(
    layers: Iterable[Entry], base: tuple[dict[str, Any], dict[str, Any], list[str], list[str]] | None = None
) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """Settings, variables and tags of ``layers`` in order (later ones win; tags add up), over ``base``."""
    settings: dict[str, Any] = dict(base[0]) if base else {}
    variables: dict[str, Any] = dict(base[1]) if base else {}
    tags: list[str] = list(base[2]) if base else []
    for layer in layers:
        for key, value in layer.settings.items():
            if key == "tags":
                tags.extend(t for t in value if t not in tags)
            else:
                settings[key] = value
        variables.update(layer.vars)
    return settings, variables, tags


# --- reading -----------------------------------------------------------------------------------

_CACHE: dict[str, tuple[tuple[int, int], Inventory]] = {}


def inventory_format(path: str, text: str = "") -> str:
    """``toml``, ``yaml`` or ``ini``, from the file's extension (Ansible's ``hosts`` has none:
    INI; ``.json``: YAML). Another extension is INI unless ``text`` starts with ``{`` (JSON)."""
    found = _FORMATS.get(os.path.splitext(path)[1].lower())
    if found is None:
        return "yaml" if text.lstrip().startswith("{") else "ini"
    return found


def read_inventory(path: str) -> Inventory:
    """Read and check the inventory at ``path`` (cached while the file is unchanged).

    Raises :class:`InventoryError` listing every problem, each with ``file:line``.
    """
    try:
        st = os.stat(path)
    except OSError as exc:
        raise InventoryError(
            f"cannot read the inventory file {path}: {exc.strerror or exc}",
            "check the path (relative paths start at the nexusfile's folder)",
        ) from None
    stamp = (st.st_mtime_ns, st.st_size)
    cached = _CACHE.get(path)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    found = _load_parsed(path, stamp)
    if found is None:
        from nexus_core.userfiles import read_small

        try:
            text = read_small(path).decode("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) else "the file is not UTF-8 text"
            raise InventoryError(f"cannot read the inventory file {path}: {why}") from None
        found = parse_inventory(text, path)
        _save_parsed(path, stamp, found)
    _CACHE[path] = (stamp, found)
    return found


# A valid inventory, once parsed, is kept as JSON in the cache folder until the file changes
# (its mtime and size): reading 1,000 hosts back costs a few ms, parsing them again (TOML and
# YAML parsers in Python) tens of ms. An unreadable or stale copy is ignored. The version
# goes up whenever the reader's checks change: a file kept as valid under the old checks is
# read (and checked) again.
_PARSED_VERSION = 2


def _parsed_path(path: str) -> str:
    import hashlib

    from nexus_core.state.paths import cache_dir

    digest = hashlib.sha256(os.path.abspath(path).encode("utf-8", "surrogateescape")).hexdigest()[:20]
    return os.path.join(cache_dir(), "inventories", f"{digest}.json")


def _entry_data(e: Entry) -> list[Any]:
    return [e.name, e.line, e.settings, e.vars, e.hosts, e.children]


def _entry(row: list[Any]) -> Entry:
    return Entry(row[0], row[1], row[2], row[3], row[4], row[5])


def _load_parsed(path: str, stamp: tuple[int, int]) -> Inventory | None:
    import json

    try:
        with open(_parsed_path(path), encoding="utf-8") as fh:
            data = json.load(fh)
        if data["version"] != _PARSED_VERSION or data["path"] != path or tuple(data["stamp"]) != stamp:
            return None
        return Inventory(
            path,
            data["format"],
            {row[0]: _entry(row) for row in data["groups"]},
            {row[0]: _entry(row) for row in data["hosts"]},
            _entry(data["top"]),
        )
    except (OSError, ValueError, TypeError, KeyError, IndexError):
        return None


def _save_parsed(path: str, stamp: tuple[int, int], found: Inventory) -> None:
    import json

    target = _parsed_path(path)
    data = {
        "version": _PARSED_VERSION,
        "path": path,
        "stamp": list(stamp),
        "format": found.format,
        "groups": [_entry_data(e) for e in found.groups.values()],
        "hosts": [_entry_data(e) for e in found.hosts.values()],
        "top": _entry_data(found.top),
    }
    try:
        text = json.dumps(data)
    except (TypeError, ValueError):
        return  # a value JSON cannot hold (a TOML date): parse again next time
    try:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        tmp = f"{target}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, target)
    except OSError:
        pass  # an unwritable cache only costs the next run the parse


def parse_inventory(text: str, path: str, fmt: str | None = None) -> Inventory:
    """Parse inventory ``text`` (read from ``path``); raise :class:`InventoryError` with every problem."""
    fmt = fmt or inventory_format(path, text)
    reader = _Reader(path, text, fmt)
    if fmt == "toml":
        reader.toml()
    elif fmt == "yaml":
        reader.yaml()
    else:
        reader.ini()
    reader.finish()
    if reader.problems:
        n = len(reader.problems)
        raise InventoryError(
            f"the inventory file {os.path.basename(path)} has {n} problem{'s' if n != 1 else ''}",
            "fix them and run again",
            reader.problems,
        )
    return reader.inv


_TOML_KEY = re.compile(r"""^\s*([A-Za-z0-9_-]+|"[^"]*"|'[^']*')\s*=""")
_TOML_STRING = re.compile(r'"([^"\\]*)"')
_RANGE = re.compile(r"\[([0-9]+|[a-z]):([0-9]+|[a-z])(?::([0-9]+))?\]")


#: Hosts one range may name at most (a typo such as [1:10000000] would build millions of hosts).
RANGE_MAX = 100_000


def expand_range(name: str) -> list[str]:
    """Ansible's host ranges: ``web-[01:03]`` is web-01, web-02, web-03; ``db-[a:c]`` too."""
    # Several ranges in one name multiply: y-[0:99999]-[0:99999] is 10^10 names, each range
    # within the bound on its own (that name filled the memory while being expanded).
    sizes = list(itertools.takewhile(bool, map(_range_size, _RANGE.finditer(name))))
    if len(sizes) > 1 and math.prod(sizes) > RANGE_MAX:
        raise ValueError(f"{name!r} holds more than {RANGE_MAX:,} hosts (its ranges multiply)")
    return _expand(name)


def _range_size(found: re.Match[str]) -> int:
    """The names one range stands for; 0 for a range of a digit and a letter (:func:`_expand` says why)."""
    lo, hi, step = found.group(1), found.group(2), max(1, int(found.group(3) or 1))
    if lo.isdigit() != hi.isdigit():
        return 0
    first, last = (int(lo), int(hi)) if lo.isdigit() else (ord(lo), ord(hi))
    return max(1, (last - first) // step + 1)


def _expand(name: str) -> list[str]:
    match = _RANGE.search(name)
    if match is None:
        return [name]
    start, end, step_text = match.group(1), match.group(2), match.group(3)
    step = int(step_text) if step_text else 1
    if start.isdigit() != end.isdigit() or step < 1:
        raise ValueError(f"bad range [{match.group(0)[1:-1]}] in {name!r}")
    if start.isdigit():
        width = len(start) if start.startswith("0") else 0
        lo, hi = int(start), int(end)
        if hi < lo:
            raise ValueError(f"bad range [{start}:{end}] in {name!r}: it ends before it starts")
        if hi - lo > RANGE_MAX:
            raise ValueError(f"bad range [{start}:{end}] in {name!r}: more than {RANGE_MAX:,} hosts in one range")
        items = [str(i).zfill(width) for i in range(lo, hi + 1, step)]
    else:
        if end < start:
            raise ValueError(f"bad range [{start}:{end}] in {name!r}")
        items = [chr(c) for c in range(ord(start), ord(end) + 1, step)]
    head, tail = name[: match.start()], name[match.end() :]
    return [expanded for item in items for expanded in _expand(head + item + tail)]


#: Values a YAML inventory may hold once its aliases are written out: ten anchors of ten
#: aliases each are 10^10 values in a few lines, which filled the memory (a billion laughs).
YAML_NODES_MAX = 2_000_000
_RECURSIVE = YAML_NODES_MAX + 2


def _expanded_size(root: Any, limit: int) -> int:
    """The nodes of a composed YAML document with every alias written out (one walk over its
    distinct nodes; counts stop past ``limit``); ``_RECURSIVE`` for an alias inside itself."""
    sizes: dict[int, int] = {}
    visiting: set[int] = set()
    stack: list[tuple[Any, bool]] = [(root, False)]
    for _ in range(50_000_000):  # bounded: each distinct node is pushed twice at most
        if not stack:
            break
        node, done = stack.pop()
        children = _yaml_children(node)
        if not done:
            if id(node) in sizes:
                continue
            visiting.add(id(node))
            stack.append((node, True))
            for child in children:
                if id(child) in visiting:
                    return _RECURSIVE
                if id(child) not in sizes:
                    stack.append((child, False))
            continue
        visiting.discard(id(node))
        sizes[id(node)] = min(limit + 1, 1 + sum(sizes.get(id(c), 1) for c in children))
    return sizes.get(id(root), 0)


def _yaml_children(node: Any) -> list[Any]:
    """A composed YAML node's children: a sequence's items, a mapping's keys and values."""
    if not isinstance(node.value, list):
        return []  # a scalar
    return [part for item in node.value for part in (item if isinstance(item, tuple) else (item,))]


class _Reader:
    """Builds an :class:`Inventory`, collecting problems with their lines."""

    def __init__(self, path: str, text: str, fmt: str) -> None:
        self.path = path
        self.text = text
        self.inv = Inventory(path, fmt)
        self.problems: list[Problem] = []
        self._members: dict[str, set[str]] = {}

    # --- shared -------------------------------------------------------------------------------

    def problem(self, line: int, message: str, hint: str = "") -> None:
        self.problems.append(Problem(message, Location(self.path, line), hint, "bad-inventory"))

    def line_of(self, *needles: str, after: int = 0) -> int:
        """The first line (after line ``after``) that mentions every needle (0 when none does).

        For messages about the file as a whole (a linear scan; per-entry lines come from the
        index of :meth:`_index`).
        """
        for number, line in enumerate(self.text.splitlines(), 1):
            if number > after and all(n in line for n in needles):
                return number
        return 0

    def _index(self) -> None:
        """Where each TOML table, key and string is, in one pass (lines of 1,000 hosts stay cheap)."""
        self.headers: dict[str, int] = {}
        self.keys: dict[str, list[int]] = {}
        self.strings: dict[str, list[int]] = {}
        for number, line in enumerate(self.text.splitlines(), 1):
            stripped = line.strip()
            if stripped.startswith("["):
                name = stripped.strip("[]").strip().replace('"', "").replace("'", "")
                self.headers.setdefault(name, number)
                continue
            key = _TOML_KEY.match(line)
            if key:
                self.keys.setdefault(key.group(1).strip("\"'"), []).append(number)
            if '"' in line:
                for text in _TOML_STRING.findall(line):
                    self.strings.setdefault(text, []).append(number)

    @staticmethod
    def _after(lines: list[int] | None, after: int) -> int:
        if not lines:
            return 0
        import bisect

        i = bisect.bisect_right(lines, after)
        return lines[i] if i < len(lines) else 0

    def group(self, name: str, line: int) -> Entry:
        entry = self.inv.groups.get(name)
        if entry is None:
            entry = self.inv.groups[name] = Entry(name, line)
        return entry

    def add_host(self, group: Entry | None, name: str, line: int) -> Entry:
        if group is not None:
            members = self._members.get(group.name)
            if members is None:
                members = self._members[group.name] = set(group.hosts)
            if name in members:
                self.problem(line, f"host {name!r} is listed twice in group {group.name!r}", "remove one of them")
            else:
                group.hosts.append(name)
                members.add(name)
        entry = self.inv.hosts.get(name)
        if entry is None:
            entry = self.inv.hosts[name] = Entry(name, line)
        return entry

    def setting(self, entry: Entry, key: str, value: Any, line: int, what: str) -> None:
        """Check and store one connection setting of a group or host."""
        if key == "port":
            if isinstance(value, str) and value.isdigit():
                value = int(value)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
                self.problem(line, f"{what}: port must be a number from 1 to 65535, not {safe_repr(value)}")
                return
        elif key == "tags":
            if isinstance(value, str):
                value = [t.strip() for t in value.split(",") if t.strip()]
            if not isinstance(value, list) or not all(isinstance(t, str) and t and " " not in t for t in value):
                self.problem(line, f"{what}: tags must be a list of names without spaces, not {safe_repr(value)}",
                             'write tags = ["blue", "eu"]')  # fmt: skip
                return
        elif not isinstance(value, str) or not value:
            self.problem(line, f"{what}: {key} must be a non-empty string, not {safe_repr(value)}")
            return
        if key in entry.settings and entry.settings[key] != value and key != "tags":
            self.problem(
                line,
                f"{what}: {key} is {safe_repr(entry.settings[key])} (line {entry.line}) and {safe_repr(value)} here",
                "give it one value",
            )
            return
        if key == "tags" and "tags" in entry.settings:
            value = [*entry.settings["tags"], *(t for t in value if t not in entry.settings["tags"])]
        entry.settings[key] = value

    def variables(self, entry: Entry, values: Any, line: int, what: str) -> None:
        if not isinstance(values, Mapping):
            self.problem(line, f"{what}: vars must be a table of names to values, not {safe_repr(values)}",
                         "write vars = { role = \"primary\" }")  # fmt: skip
            return
        for key, value in values.items():
            entry.vars[str(key)] = value

    def unknown(self, key: str, allowed: Iterable[str], line: int, what: str) -> None:
        allowed = list(allowed)
        close = suggest(key, allowed)
        self.problem(
            line,
            f"{what}: unknown key {key!r}",
            f"did you mean {close!r}?" if close else "known keys: " + ", ".join(allowed),
        )

    def finish(self) -> None:
        """Checks over the whole file: child groups that do not exist or include themselves.

        Ansible's implicit ``all`` group holds every host of an INI or YAML inventory (its
        ``[all:vars]`` apply to every host, before any other group's).
        """
        if self.inv.format != "toml":
            everyone = self.group("all", 0)
            everyone.children = []
            everyone.hosts = list(self.inv.hosts)
        elif self.inv.groups:
            self._ungrouped()
        for name, entry in self.inv.groups.items():
            for child in entry.children:
                if child not in self.inv.groups:
                    close = suggest(child, self.inv.groups)
                    self.problem(
                        entry.line,
                        f"group {name!r} has child group {child!r}, which the file does not define",
                        f"did you mean {close!r}?" if close else f"define group {child!r} or remove it from children",
                    )
        cycles = False
        for name in self.inv.groups:
            cycle = self._cycle(name, [])
            cycles = cycles or bool(cycle)
            if cycle and cycle[0] == name and name == min(cycle[:-1]):
                self.problem(self.inv.groups[name].line, "child groups include each other: " + " -> ".join(cycle),
                             "remove one of the children")  # fmt: skip
        if cycles:  # the hosts' settings cannot be resolved through a cycle
            return
        # Every mistake at once: the hosts' addresses too, beside the file's other problems.
        before = len(self.problems)
        try:
            self._check_connections()
        except Exception:
            if not before:
                raise
            del self.problems[before:]  # what the file's other mistakes made unreadable: said once they are fixed

    def _ungrouped(self) -> None:
        """In a TOML file with groups, a ``[hosts.NAME]`` that no group lists is a mistake:
        ``inventory()`` and every group selection leave it out, so its settings were silently
        dropped (``[hosts.web1]`` meant for ``web-1`` connected to ``web-1`` by name, on the
        default port). A file of ``[hosts.NAME]`` tables only is a plain list of hosts."""
        grouped = {host for entry in self.inv.groups.values() for host in entry.hosts}
        for name, entry in self.inv.hosts.items():
            if name in grouped:
                continue
            close = suggest(name, grouped)
            self.problem(
                entry.line,
                f"host {name!r} ([hosts.{name}]) is in no group, so inventory() and group selections never use it",
                f"did you mean [hosts.{close}]?"
                if close
                else f'list it in a group (hosts = ["{name}"] under [groups.NAME]) or remove the entry',
            )

    def _check_connections(self) -> None:
        """Each host, settings resolved, must be a usable host, and no two hosts the same one.

        Checked once per change of the file (the parsed copy is cached): otherwise a host
        whose address is not a host name (``ansible_host=web-1:2222``, ``héllo``) stopped the
        run at the nexusfile's ``inventory(...)`` line and vanished from ``nexus hosts list``,
        and a second name for the same address, user and port (``nas`` and ``plex`` at
        ``192.168.1.5``) was silently merged into the first.
        """
        from nexus_core.discovery import host_text
        from nexus_core.hosts import HostParseError, parse_host

        key = "ansible_host" if self.inv.format != "toml" else "address"
        owners: dict[str, str] = {}
        for found in self.inv.select(None):
            name = found.name or found.address
            line = self.inv.hosts[name].line if name in self.inv.hosts else 0
            text = ""
            try:
                text = host_text(found)
                if text != "local" and not _plain(found):
                    parse_host(text)
            except (HostParseError, TypeError, ValueError) as exc:
                settings = (
                    ("ansible_user and ansible_port", f"{key}=")
                    if key == "ansible_host"
                    else ("user and port", f"{key} = ")
                )
                if found.address == name:  # no address given: the name is what Nexus connects to
                    hint = f"a host without {key} is connected to by its name: give it {settings[1]}ADDRESS"
                else:
                    hint = f"{key} is a host name or an IP address alone: give the user and the port with {settings[0]}"
                why = str(exc).removeprefix(f"host {text!r}: ")  # said once: the name, then what is wrong
                head, colon, tail = found.address.rpartition(":")
                if colon and tail.isdigit() and ":" not in head:  # web-1:2222 (not an IPv6 address)
                    why = f"{key} {found.address!r} holds a port"
                self.problem(line, f"host {name!r}: {why}", hint)
                continue
            first = owners.setdefault(text, name)
            if first != name:
                self.problem(
                    line,
                    f"hosts {first!r} (line {self.inv.hosts[first].line}) and {name!r} both connect to {text!r}: "
                    f"Nexus runs a machine once, so {name!r} would be merged into {first!r}",
                    "keep one name for the machine and list it in each group it belongs to",
                )

    def _cycle(self, name: str, stack: list[str]) -> list[str] | None:
        if name in stack:
            return [*stack[stack.index(name) :], name]
        if len(stack) > 100 or name not in self.inv.groups:
            return None
        for child in self.inv.groups[name].children:
            found = self._cycle(child, [*stack, name])
            if found:
                return found
        return None

    def names(self, raw: str, line: int) -> list[str]:
        if not raw.strip() or any(c.isspace() for c in raw):
            why = f"host {raw!r}: a host's name cannot be empty or hold spaces"
            self.problem(line, why, "give each host a name, e.g. web-1 (its address goes in ansible_host or address)")
            return []
        if raw.count("[") != raw.count("]") or (("[" in raw) and not _RANGE.search(raw) and not raw.startswith("[")):
            # web-[1: (a range left open) read as a host and a port: "port '' is not a number"
            self.problem(line, f"host {raw!r}: a range is not closed or not of the form [01:20] or [a:f]",
                         "write a range as web-[01:20] or db-[a:f]")  # fmt: skip
            return []
        try:
            return expand_range(raw)
        except ValueError as exc:
            self.problem(line, str(exc), "write a range as [01:20] or [a:f]")
            return []

    # --- TOML ----------------------------------------------------------------------------------

    def toml(self) -> None:
        import tomllib

        self._index()
        try:
            data = tomllib.loads(self.text)
        except tomllib.TOMLDecodeError as exc:
            found = re.search(r"line (\d+)", str(exc))
            self.problem(int(found.group(1)) if found else 0, f"TOML syntax error: {exc}")
            return
        except RecursionError:  # tomllib parses nested arrays and tables recursively
            self.problem(0, "TOML syntax error: values nested too deeply", "an inventory needs a few levels at most")
            return
        for key, value in data.items():
            if key == "groups":
                if not isinstance(value, dict):
                    self.problem(self.line_of("groups"), "groups must be tables: [groups.NAME]")
                    continue
                for name, body in value.items():
                    self._toml_group(name, body)
            elif key == "hosts":
                if not isinstance(value, dict):
                    self.problem(self.line_of("hosts"), "top-level hosts must be tables: [hosts.NAME]",
                                 "list a group's hosts in [groups.NAME] hosts = [...]")  # fmt: skip
                    continue
                for name, body in value.items():
                    self._toml_host(name, body)
            elif key == "vars":
                self.variables(self.inv.top, value, self.line_of("vars"), "the file")
            elif key in SETTINGS:
                self.setting(self.inv.top, key, value, self.line_of(key), "the file")
            else:
                self.unknown(key, TOP_KEYS, self.line_of(key), "the file")

    def _toml_group(self, name: str, body: Any) -> None:
        line = self.headers.get(f"groups.{name}") or self.line_of(name)
        what = f"group {name!r}"
        if not isinstance(body, dict):
            self.problem(line, f"{what} must be a table", f"write [groups.{name}] with hosts = [...]")
            return
        entry = self.group(name, line)
        for key, value in body.items():
            at = self._after(self.keys.get(key), line) or line
            if key == "hosts":
                if not isinstance(value, list) or not all(isinstance(h, str) and h for h in value):
                    self.problem(at, f"{what}: hosts must be a list of host names", 'write hosts = ["web-1", "web-2"]')
                    continue
                for raw in value:
                    for host in self.names(raw, at):
                        self.add_host(entry, host, self._after(self.strings.get(raw), line) or at)
            elif key == "children":
                if not isinstance(value, list) or not all(isinstance(c, str) and c for c in value):
                    self.problem(at, f"{what}: children must be a list of group names", 'write children = ["web"]')
                    continue
                entry.children.extend(c for c in value if c not in entry.children)
            elif key == "vars":
                self.variables(entry, value, at, what)
            elif key in SETTINGS:
                self.setting(entry, key, value, at, what)
            else:
                self.unknown(key, GROUP_KEYS, at, what)

    def _toml_host(self, name: str, body: Any) -> None:
        line = self.headers.get(f"hosts.{name}") or self.line_of(name)
        what = f"host {name!r}"
        if not isinstance(body, dict):
            self.problem(line, f"{what} must be a table", f'write [hosts.{name}] with address = "..."')
            return
        entry = self.add_host(None, name, line)
        entry.line = line
        for key, value in body.items():
            at = self._after(self.keys.get(key), line) or line
            if key == "address":
                if not isinstance(value, str) or not value:
                    self.problem(at, f"{what}: address must be a host name or an IP address")
                    continue
                entry.settings["address"] = value
            elif key == "vars":
                self.variables(entry, value, at, what)
            elif key in SETTINGS:
                self.setting(entry, key, value, at, what)
            else:
                self.unknown(key, HOST_KEYS, at, what)

    # --- Ansible INI ---------------------------------------------------------------------------

    def undefined_children(self, defined: set[str], listed: list[tuple[str, str, int]], how: str) -> None:
        """Report each child group of ``listed`` (parent, child, line) that is not in ``defined``.

        Ansible would make such a group silently, with no hosts: a misspelt child (``dbb`` for
        ``db``) dropped its hosts from the parent without a word. ``how``: how to define one.
        """
        for parent, child, number in listed:
            if child in defined or child in ("all", "ungrouped"):
                continue
            close = suggest(child, defined)
            self.problem(
                number,
                f"group {parent!r} has child group {child!r}, which the file does not define",
                f"did you mean {close!r}?" if close else how.format(child=child, parent=parent),
            )

    def ini(self) -> None:
        section: tuple[str, str] = ("ungrouped", "hosts")
        defined: set[str] = set()  # groups with a section of their own ([g], [g:vars], [g:children])
        listed: list[tuple[str, str, int]] = []  # (parent, child, line) of [parent:children]
        for number, raw in enumerate(self.text.splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith(("#", ";")):
                continue
            if line.startswith("["):
                if not line.endswith("]") or len(line) < 3:
                    what = f"unclosed section header {line!r}"
                    if line.replace(" ", "") == "[]":
                        what = "an empty section header"
                    self.problem(number, what, "write [group], [group:vars] or [group:children]")
                    continue
                name, _, kind = line[1:-1].strip().partition(":")
                kind = kind or "hosts"
                if kind not in ("hosts", "vars", "children") or not name:
                    self.problem(number, f"unknown section [{line[1:-1]}]",
                                 "sections are [group], [group:vars] and [group:children]")  # fmt: skip
                    section = ("", "skip")
                    continue
                section = (name, kind)
                self.group(name, number)
                defined.add(name)
                continue
            name, kind = section
            if kind == "skip":
                continue
            if kind == "children":
                entry = self.group(name, number)
                child = line.split()[0]
                if child in entry.children:
                    self.problem(number, f"group {child!r} is listed twice in [{name}:children]")
                else:
                    entry.children.append(child)
                    self.group(child, number)
                    listed.append((name, child, number))
            elif kind == "vars":
                key, sep, value = line.partition("=")
                if not sep or not key.strip():
                    self.problem(number, f"[{name}:vars]: expected NAME=VALUE, got {line!r}")
                    continue
                self._ini_var(self.group(name, number), key.strip(), value.strip(), number, f"group {name!r}")
            else:
                self._ini_host(name, line, number)
        self.undefined_children(defined, listed, "add a [{child}] section, or remove it from [{parent}:children]")

    def _ini_host(self, group: str, line: str, number: int) -> None:
        if "'" in line or '"' in line:
            import shlex

            try:
                words = shlex.split(line, comments=True)
            except ValueError as exc:
                self.problem(number, f"cannot read the host line {line!r}: {exc}", "close the quotes")
                return
        else:  # the common case, ten times faster than shlex
            words = line.split("#", 1)[0].split()
        if not words:
            return
        raw, assignments = words[0], words[1:]
        if "=" in raw:
            self.problem(number, f"a host line starts with the host name, not {raw!r}",
                         "write: web-1 ansible_host=10.0.0.1")  # fmt: skip
            return
        entry_group = self.group(group, number)
        for host in self.names(raw, number):
            entry = self.add_host(entry_group, host, number)
            for word in assignments:
                key, sep, value = word.partition("=")
                if not sep or not key:
                    self.problem(number, f"host {host!r}: expected NAME=VALUE, got {word!r}",
                                 "write: web-1 ansible_port=2222")  # fmt: skip
                    continue
                self._ini_var(entry, key, value, number, f"host {host!r}")

    def _ini_var(self, entry: Entry, key: str, value: str, number: int, what: str) -> None:
        text = value.strip()
        if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
            text = text[1:-1]
        self._var(entry, key, _scalar(text), number, what)

    def _var(self, entry: Entry, key: str, value: Any, number: int, what: str) -> None:
        """An Ansible variable: connection variables become settings, the others variables."""
        setting = ANSIBLE_SETTINGS.get(key)
        if setting == "address":
            entry.settings["address"] = str(value)
        elif setting is not None:
            self.setting(entry, setting, str(value) if setting != "port" else value, number, what)
        elif key == "tags":
            self.setting(entry, "tags", value, number, what)
        else:
            entry.vars[key] = value

    # --- Ansible YAML --------------------------------------------------------------------------

    def yaml(self) -> None:
        import yaml

        try:
            root = yaml.compose(self.text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # libyaml: 10x
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = mark.line + 1 if mark is not None else 0
            self.problem(where, f"YAML syntax error: {getattr(exc, 'problem', None) or exc}")
            return
        if root is None:
            return
        size = _expanded_size(root, YAML_NODES_MAX)
        if size > YAML_NODES_MAX:
            why = (f"the file expands to more than {YAML_NODES_MAX:,} values once its YAML aliases (*name) are"
                   " written out")  # fmt: skip
            if size == _RECURSIVE:
                why = "a YAML alias (*name) is inside the value it names: written out, the file never ends"
            self.problem(root.start_mark.line + 1, why, "write the values out, or use fewer aliases")
            return
        if not isinstance(root, yaml.MappingNode):
            self.problem(root.start_mark.line + 1, "an Ansible YAML inventory is a mapping of groups",
                         "start with `all:` and its hosts: / children:")  # fmt: skip
            return
        self._constructor = yaml.SafeLoader("")
        self._yaml_defined: set[str] = set()
        self._yaml_listed: list[tuple[str, str, int]] = []
        for key_node, body in root.value:
            self._yaml_group(str(key_node.value), body, key_node.start_mark.line + 1)
        self.undefined_children(
            self._yaml_defined,
            self._yaml_listed,
            "give {child} its hosts: (or children:) somewhere in the file, or remove it from {parent}'s children",
        )

    def _value(self, node: Any) -> Any:
        return self._constructor.construct_object(node, deep=True)

    def _yaml_group(self, name: str, node: Any, line: int, parent: str = "") -> None:
        """One group's mapping; a child with an empty body names a group defined elsewhere."""
        import yaml

        entry = self.group(name, line)
        what = f"group {name!r}"
        if isinstance(node, yaml.ScalarNode) and node.value in ("", "~", "null"):
            if parent:
                self._yaml_listed.append((parent, name, line))
            else:
                self._yaml_defined.add(name)  # a top-level group with nothing in it yet
            return
        self._yaml_defined.add(name)
        if not isinstance(node, yaml.MappingNode):
            self.problem(line, f"{what} must be a mapping with hosts:, children: or vars:")
            return
        for key_node, body in node.value:
            key = str(key_node.value)
            at = key_node.start_mark.line + 1
            if key == "hosts":
                self._yaml_hosts(entry, body, at)
            elif key == "children":
                if isinstance(body, yaml.ScalarNode) and body.value in ("", "~", "null"):
                    continue
                if not isinstance(body, yaml.MappingNode):
                    self.problem(at, f"{what}: children must be a mapping of group names")
                    continue
                for child_key, child_body in body.value:
                    child = str(child_key.value)
                    if child in entry.children:
                        self.problem(child_key.start_mark.line + 1, f"{what}: child group {child!r} is listed twice")
                        continue
                    entry.children.append(child)
                    self._yaml_group(child, child_body, child_key.start_mark.line + 1, name)
            elif key == "vars":
                values = self._value(body)
                if values is None:
                    continue
                if not isinstance(values, dict):
                    self.problem(at, f"{what}: vars must be a mapping of names to values")
                    continue
                for var, value in values.items():
                    self._var(entry, str(var), value, at, what)
            else:
                self.unknown(key, ("hosts", "children", "vars"), at, what)

    def _yaml_hosts(self, group: Entry, node: Any, line: int) -> None:
        import yaml

        if isinstance(node, yaml.ScalarNode) and node.value in ("", "~", "null"):
            return
        if not isinstance(node, yaml.MappingNode):
            self.problem(line, f"group {group.name!r}: hosts must be a mapping of host names to their variables")
            return
        for key_node, body in node.value:
            at = key_node.start_mark.line + 1
            for host in self.names(str(key_node.value), at):
                entry = self.add_host(group, host, at)
                values = self._value(body)
                if values is None:
                    continue
                if not isinstance(values, dict):
                    self.problem(at, f"host {host!r}: its variables must be a mapping (ansible_host: ...)")
                    continue
                for var, value in values.items():
                    self._var(entry, str(var), value, at, f"host {host!r}")


#: A DNS name with a letter (no IPv4 address to check), as ``parse_host`` accepts it.
_PLAIN_NAME = re.compile(rf"(?=[0-9._-]*[A-Za-z_]){LABEL.pattern}(?:\.{LABEL.pattern})*\.?")


def _plain(found: DiscoveredHost) -> bool:
    """True when ``found`` is a usable host without parsing its host string (most hosts of an
    inventory: a DNS name, maybe a user): parsing each of 10,000 hosts tripled the parse."""
    from nexus_core.hosts import USER_NAME

    address, user = found.address, found.user
    return (
        not found.transport
        and isinstance(address, str)
        and len(address) <= 253
        and _PLAIN_NAME.fullmatch(address) is not None
        and (user is None or (isinstance(user, str) and USER_NAME.fullmatch(user) is not None))
    )


def _scalar(text: str) -> Any:
    """An INI value as Ansible reads it: integers, floats and booleans, else the string."""
    if re.fullmatch(r"-?[0-9]+", text):
        return int(text)
    if re.fullmatch(r"-?[0-9]+\.[0-9]+", text):
        return float(text)
    if text in ("True", "true", "yes"):
        return True
    if text in ("False", "false", "no"):
        return False
    return text
