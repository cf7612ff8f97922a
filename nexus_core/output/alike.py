"""Alike errors across hosts: the same error with each host's own identity set aside.

The same connection error on 200 hosts reads differently on each: ``Connection refused
(127.0.0.21 port 22)``, ``Host key not known for [127.0.0.7]:22 (ed25519 SHA256:...)``, and
a stopped command names its remote process group (``remote process group 340 sent SIGINT``).
To explain such an error once, naming every host (docs/output.md), a text is reduced to
its :class:`Shape`: the host's own name (its label, its address, in ``[address]`` and
``user@address`` forms) and volatile values (remote process group ids, key fingerprints,
the line of a ``known_hosts`` file that holds the host's key) become placeholders;
everything else, ports, users, key types, exit codes and counts included, stays as it is,
so distinct errors stay distinct. The failure report shows the
first host's text; one-line views (the tree by outcome, ``nexus exec``) show :func:`merged`.

:func:`merged` gives the text shown for a group of alike texts: each placeholder shows its
value where every host has the same one, and a generic ``<host>``, ``<pgid>``,
``<fingerprint>`` or ``<line>`` where they differ.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

#: What each kind of placeholder reads as when the hosts' values differ.
GENERIC = {"host": "<host>", "pgid": "<pgid>", "fingerprint": "<fingerprint>", "line": "<line>"}

# A remote process group id or ids (``340``, ``340 341``, ``[340, 341]``) after its words.
_PGID = r"(?<=process group )(?:\[\d+(?:, \d+)*\]|\d+(?: \d+)*)(?!\w)"
# A key fingerprint's value (its kind, SHA256 or MD5, stays in the text).
_FINGERPRINT = r"(?<=SHA256:)[A-Za-z0-9+/]{16,}={0,2}|(?<=MD5:)[0-9a-f]{2}(?::[0-9a-f]{2}){15}"
# The line of a known_hosts file that holds a host's key, as a changed host key's message
# gives it: ``(from PATH line 12)`` and ``(or delete line 12 of PATH)``.
_KNOWN_LINE = r"(?<= line )\d+(?=\))|(?<=delete line )\d+(?= of )"
_MARK = re.compile("\0(host|pgid|fingerprint|line)\0")


@dataclass(frozen=True)
class Shape:
    """A text with placeholders (``key``) and the values they stand for, in order."""

    key: str
    values: tuple[str, ...] = ()

    def text(self) -> str:
        """The original text."""
        return merged([self])


def names_of(label: str, *others: str) -> tuple[str, ...]:
    """The forms of a host's identity found in a text about it: its label and its name, then
    ``others`` (its address, say), each once.

    ``deploy@web-1:2222`` gives ``deploy@web-1:2222`` and ``web-1``; ``[2001:db8::1]:22``
    gives the label and ``2001:db8::1``. A port or user next to the name stays in the text.
    """
    rest = label.rpartition("@")[2]
    if rest.startswith("[") and "]" in rest:
        name = rest[1 : rest.index("]")]
    elif rest.count(":") == 1 and rest.partition(":")[2].isdigit():
        name = rest.partition(":")[0]
    else:
        name = rest
    return tuple(n for n in dict.fromkeys((label, name, *others)) if n)


@functools.lru_cache(maxsize=4096)
def _pattern(names: tuple[str, ...]) -> re.Pattern[str]:
    """One pattern for the names (longest first, whole names only) and the volatile values."""
    forms = sorted(names, key=len, reverse=True)
    # A whole name: ``web-1`` in ``deploy@web-1``, ``[web-1]:22`` and ``web-1:22`` but not
    # in ``web-12`` or ``web-1.example.com``.
    hosts = "|".join(re.escape(n) for n in forms)
    parts = [f"(?P<pgid>{_PGID})", f"(?P<fingerprint>{_FINGERPRINT})", f"(?P<line>{_KNOWN_LINE})"]
    if hosts:
        parts.insert(0, rf"(?P<host>(?<![\w.-])(?:{hosts})(?![\w-]|\.\w))")
    return re.compile("|".join(parts))


def shape(text: str, names: Iterable[str]) -> Shape:
    """``text`` with the host's ``names`` (see :func:`names_of`) and volatile values as placeholders."""
    if "\0" in text:  # never taken for a placeholder: kept as it is (grouped only with the same text)
        return Shape(text)
    values: list[str] = []

    def mark(m: re.Match[str]) -> str:
        kind = m.lastgroup or "host"
        values.append(m.group())
        return f"\0{kind}\0"

    key = _pattern(tuple(n for n in names if n)).sub(mark, text)
    return Shape(key, tuple(values))


def alike_key(text: str, label: str, *names: str) -> str:
    """``text`` with the identity of the host it is about set aside: its ``label`` (in the forms
    :func:`names_of` finds), its other ``names`` (an address) and volatile values. Texts about
    different hosts that say the same thing have equal keys (:attr:`Shape.key`)."""
    return shape(text, names_of(label, *names)).key


def merged(shapes: Sequence[Shape]) -> str:
    """The text shown once for alike shapes (equal keys): a value all of them share is shown,
    one that differs reads ``<host>``, ``<pgid>``, ``<fingerprint>`` or ``<line>``. Shapes that are not
    alike give the first one's text."""
    if not shapes:
        return ""
    first = shapes[0]
    if any(s.key != first.key or len(s.values) != len(first.values) for s in shapes):
        shapes = [first]
    parts = _MARK.split(first.key) if first.values else [first.key]
    out = [parts[0]]
    for i in range(len(first.values)):
        kind = parts[2 * i + 1]
        seen = {s.values[i] for s in shapes}
        out.append(first.values[i] if len(seen) == 1 else GENERIC[kind])
        out.append(parts[2 * i + 2])
    return "".join(out)


def merged_texts(texts: Sequence[tuple[str, Iterable[str]]]) -> str:
    """:func:`merged` of ``(text, names)`` pairs, each text shaped with its host's names."""
    return merged([shape(text, names) for text, names in texts])


def listed(names: Sequence[str], shown: int = 5) -> str:
    """The first ``shown`` of ``names``, then how many more: ``a, b, c and 4 more``."""
    more = len(names) - shown
    return ", ".join(names[:shown]) + (f" and {more} more" if more > 0 else "")


def host_rank(order: Sequence[str]) -> functools.partial[tuple[int, tuple[tuple[int, str], ...]]]:
    """A sort key for host labels: their place in ``order`` (the plan's), then by name with
    numbers compared by value (``web-2`` before ``web-10``) for hosts ``order`` does not name."""
    return functools.partial(_rank, {label: i for i, label in enumerate(order)})


def _rank(places: dict[str, int], label: str) -> tuple[int, tuple[tuple[int, str], ...]]:
    """See :func:`host_rank`."""
    natural = tuple((int(p), "") if p.isdigit() else (-1, p) for p in re.split(r"(\d+)", label) if p)
    return places.get(label, len(places)), natural
