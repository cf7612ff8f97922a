"""``secret("NAME", to=PATH)``: the shell text that writes a value from standard input to a file.

The value never appears in the command (``ps`` on the host would show it): the executor
writes it on the command's standard input after a marker line. A sudo that asks for a
password reads its line first from the same input, and one that does not leaves the line
unread; the script skips every line up to the marker, so the file gets exactly the value in
both cases. The file is written next to its destination under a temporary name (``umask
077``), given its mode, owner and group, then renamed over the destination: readers see the
old file or the new one, never a part. Without the marker (input cut short) nothing changes,
nor when the destination is a folder.
"""

from __future__ import annotations

import hashlib
import posixpath
import re

from nexus_core.shell import quote, temp_name

_ACCOUNT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*\$?$")


def marker(reference: str) -> str:
    """The line that precedes the value on standard input (fixed per reference: plans stay comparable)."""
    digest = hashlib.sha256(reference.encode()).hexdigest()[:24]
    return f"NEXUS-SECRET-{digest}"


def write_script(reference: str, path: str, *, mode: int = 0o600, owner: str | None = None,
                 group: str | None = None) -> str:  # fmt: skip
    """Shell text writing standard input (after :func:`marker`) to ``path`` atomically."""
    for what, value in (("owner", owner), ("group", group)):
        if value is not None and not _ACCOUNT.match(value):
            raise ValueError(f"{what}={value!r} is not a valid {what} name")
    folder, base = posixpath.split(path)
    tmp = quote(posixpath.join(folder or "/", temp_name(base, ".nexus-XXXXXX")))
    steps = [f'chmod {mode:o} "$t"']
    if owner or group:
        who = (owner or "") + (f":{group}" if group else "")
        steps.append(f'chown {quote(who)} "$t"')
    steps.append(f'mv -f "$t" {quote(path)}')
    where = quote(path)
    return "\n".join(
        [
            f"# write secret {reference} to {path}",
            # `mv` would put the file inside a folder (under its temporary name) and succeed
            f"[ -d {where} ] && {{ echo {quote(f'nexus: {path} is a folder: to= names the file to write')} >&2; "
            "exit 1; }",
            f"umask 077; t=$(mktemp {tmp}) || exit 1",
            f'f=; while IFS= read -r l; do [ "$l" = {marker(reference)} ] && {{ f=1; break; }}; done',
            '[ -n "$f" ] || { rm -f "$t"; echo "nexus: the secret did not arrive on standard input" >&2; exit 1; }',
            'cat >"$t" && ' + " && ".join(steps) + ' || { rm -f "$t"; exit 1; }',
        ]
    )
