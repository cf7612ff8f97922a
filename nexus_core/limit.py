"""Host limits: ``-H/--hosts`` patterns that narrow the hosts of each task, like Ansible's ``--limit``.

A limit is a list of patterns (comma-separated, or ``-H`` given several times). Each
pattern is a host (its label, name, address, ``user@name`` or full host string, or a
discovered host's own name), a host group, a glob over either (``web-*``, ``10.0.0.*``),
or ``tag:PATTERN`` (the hosts with such a tag). A pattern starting with ``!``
excludes what it matches; one starting with ``&`` keeps only hosts it also matches;
``@PATH`` reads more patterns from a file, one a line (``#`` starts a comment).

Hosts kept = (union of the plain patterns, or every host when there is none)
             ∩ every ``&`` pattern − every ``!`` pattern.

Everything here is pure: the planner passes the hosts and the group membership in.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from nexus_core.hosts import format_host
from nexus_core.model import Host, HostKey

#: Identity of a host for group membership (two equal host strings give the same key).

_MAX_FILE_DEPTH = 8

#: ``-H tag:web``: hosts by tag rather than by name.
TAG_PREFIX = "tag:"


class LimitError(ValueError):
    """A ``-H`` value that cannot be understood (empty pattern, unreadable ``@file``...)."""


@dataclass(frozen=True)
class Term:
    """One pattern: ``kind`` is ``+`` (include), ``&`` (intersect) or ``!`` (exclude).

    ``where`` is ``FILE:LINE`` for a pattern read from an ``@file`` (empty when given on the
    command line): messages name that line instead of repeating the file's text, which may be
    anything (``-H @.env`` by mistake).
    """

    kind: str
    pattern: str
    where: str = field(default="", compare=False)

    def __str__(self) -> str:
        return self.pattern if self.kind == "+" else self.kind + self.pattern


@dataclass(frozen=True)
class Limit:
    """A parsed ``-H`` limit; ``text`` is how it was given (for messages and suggestions)."""

    terms: tuple[Term, ...]
    text: str

    def select(self, hosts: Sequence[Host], groups: Mapping[str, Iterable[HostKey]]) -> list[Host]:
        """The hosts of ``hosts`` (in their order) that this limit keeps."""
        members = {name: set(keys) for name, keys in groups.items()}
        includes = [t for t in self.terms if t.kind == "+"]
        kept: list[Host] = []
        for host in hosts:
            if includes and not any(matches(t.pattern, host, members) for t in includes):
                continue
            if any(not matches(t.pattern, host, members) for t in self.terms if t.kind == "&"):
                continue
            if any(matches(t.pattern, host, members) for t in self.terms if t.kind == "!"):
                continue
            kept.append(host)
        return kept

    def unmatched(self, hosts: Iterable[Host], groups: Mapping[str, Iterable[HostKey]]) -> list[str]:
        """Patterns that match no host and no group of the inventory (each one a likely typo)."""
        return [str(t) for t in self.unmatched_terms(hosts, groups)]

    def unmatched_terms(self, hosts: Iterable[Host], groups: Mapping[str, Iterable[HostKey]]) -> list[Term]:
        """The terms that match no host and no group of the inventory, in order."""
        members = {name: set(keys) for name, keys in groups.items()}
        universe = list(hosts)
        out: list[Term] = []
        for t in self.terms:
            if any(matches(t.pattern, h, members) for h in universe):
                continue
            if any(fnmatch.fnmatchcase(name, t.pattern) for name in members):
                continue  # a group that exists but is empty (validation reports it) or unused
            out.append(t)
        return out


def host_key(host: Host) -> HostKey:
    """The identity used for group membership (the host's own identity: transport, user, address, port)."""
    return host.key


def host_forms(host: Host, pattern: str = "@://") -> set[str]:
    """The spellings of ``host`` that ``pattern`` is compared with: label and name, plus
    ``user@name`` forms when the pattern has an ``@`` and ``transport://`` forms when it has
    ``://`` (so that ``d*`` never matches ``deploy@web-2`` through its user)."""
    # The short label (name:port) too: a host whose label carries its user, as when two users
    # share an address and port, is still named by ``-H 10.0.0.5:2222``.
    forms = {host.label, host.name, host.short_label}
    if ":" in host.name:  # an IPv6 address, also as written in brackets: [::1]
        forms.add(f"[{host.name}]")
    if "@" in pattern and host.user:
        forms |= {f"{host.user}@{host.name}", f"{host.user}@{host.label}"}
    if "://" in pattern:
        forms.add(format_host(host, default_transport=""))
        if host.user:
            forms.add(f"{host.transport}://{host.user}@{host.label}")
    if host.source and ("@" in pattern or "://" in pattern or "@" not in host.source):
        forms.add(host.source)
    name = host.facts.get("name") if host.facts else None
    if isinstance(name, str) and name:  # a discovered host's own name (inventory name, hostname)
        forms.add(name)
    return forms


def matches(pattern: str, host: Host, groups: Mapping[str, set[HostKey]]) -> bool:
    """True when ``pattern`` (no ``!``/``&`` prefix) names ``host`` or a group that holds it.

    ``tag:PATTERN`` selects by attribute: the hosts with a tag matching PATTERN (or the
    tag ``tag:PATTERN`` itself, as Tailscale spells its tags).
    """
    if pattern.startswith(TAG_PREFIX):
        wanted = pattern[len(TAG_PREFIX) :]
        return any(fnmatch.fnmatchcase(tag, wanted) or fnmatch.fnmatchcase(tag, pattern) for tag in host.tags)
    forms = host_forms(host, pattern)
    # as written first: '[' opens a character class in a glob, so '[::1]:2222' (a host's own
    # label) or 'deploy@[::2]' would match nothing as globs
    if pattern in forms or any(fnmatch.fnmatchcase(form, pattern) for form in forms):
        return True
    key = host_key(host)
    return any(key in keys and fnmatch.fnmatchcase(name, pattern) for name, keys in groups.items())


def parse_limit(values: Sequence[str], read: Callable[[str], str] | None = None) -> Limit:
    """Parse ``-H`` values (each comma-separated) into a :class:`Limit`; raise :class:`LimitError`.

    ``read`` returns the text of an ``@file`` (default: read it from disk, relative to the
    current folder).
    """
    reader = read or _read_file
    terms: list[Term] = []
    for value in values:
        terms.extend(_terms(value, reader, depth=0, where="-H"))
    if not terms:
        raise LimitError("-H/--hosts is empty: give host names, groups or patterns, e.g. -H web-1,db")
    text = ",".join(v.strip() for v in values if v.strip())
    return Limit(tuple(dict.fromkeys(terms)), text)


def _terms(value: str, read: Callable[[str], str], depth: int, where: str) -> list[Term]:
    out: list[Term] = []
    for raw in value.split(","):
        item = raw.strip()
        if not item:
            continue
        if item.startswith("@"):
            out.extend(_file_terms(item[1:], read, depth))
            continue
        kind = "+"
        if item[0] in "!&":
            kind, item = item[0], item[1:].strip()
        if not item:
            raise LimitError(f"{where}: {kind!r} needs a pattern after it, e.g. {kind}web-2")
        if any(c.isspace() for c in item):
            if where != "-H":  # a file's line is not repeated: it may hold anything
                raise LimitError(
                    f"-H @{where}: a pattern with whitespace; write one pattern a line, or separate them with commas"
                )
            raise LimitError(f"{where}: pattern {item!r} contains whitespace; separate patterns with commas")
        out.append(Term(kind, item, "" if where == "-H" else where))
    return out


def _file_terms(path: str, read: Callable[[str], str], depth: int) -> list[Term]:
    if not path:
        raise LimitError("-H @: give a file name after '@', e.g. -H @hosts.txt")
    if depth >= _MAX_FILE_DEPTH:
        raise LimitError(f"-H @{path}: files that include each other (more than {_MAX_FILE_DEPTH} levels)")
    try:
        text = read(path)
    except OSError as exc:
        raise LimitError(f"-H @{path}: cannot read the file: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise LimitError(f"-H @{path}: the file is not UTF-8 text") from None
    out: list[Term] = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if line:
            out.extend(_terms(line, read, depth + 1, where=f"{path}:{number}"))
    return out


def _read_file(path: str) -> str:
    from nexus_core.userfiles import read_small

    return read_small(path).decode("utf-8")


def rerun_command(tasks: Sequence[str], hosts: Sequence[str], options: Mapping[str, str | None]) -> str:
    """``nexus run TASKS -H HOSTS`` with the options that were given (``{"-c": path, ...}``), quoted."""
    import shlex

    words = ["nexus", "run", *tasks, "-H", ",".join(hosts)]
    for flag, value in options.items():
        if value is not None:
            words += [flag, value]
    return " ".join(shlex.quote(w) for w in words)
