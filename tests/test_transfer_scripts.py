"""The shell scripts that look at a host's files, run by the local /bin/sh.

What a first upload into a new folder and a re-run of a tree cost on the host: the look
under a missing folder starts no process at all, and the re-run's quick look asks ``stat``
for numeric owners unless names are compared (docs/decisions.md, "Files: the re-run's look").
"""

from __future__ import annotations

import os
import pwd
import subprocess
from pathlib import Path

from nexus_core import transfer


def _sh(script: str, path: str | None = None) -> list[str]:
    env = {"PATH": path if path is not None else os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"}
    proc = subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True, env=env, timeout=30, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


def test_a_look_under_a_missing_folder_starts_no_process(tmp_path: Path) -> None:
    # Every program the script may start is a stand-in that logs its name.
    programs, log = tmp_path / "programs", tmp_path / "started"
    programs.mkdir()
    for name in ("stat", "sha256sum", "shasum"):
        (programs / name).write_text(f"#!/bin/sh\necho {name} >> {log}\n")
        (programs / name).chmod(0o755)
    paths = [str(tmp_path / "tree" / f"d{d}" / f"f{f}.txt") for d in range(3) for f in range(5)]
    paths.append(str(tmp_path / "tree"))
    sizes: list[int | None] = [100] * 15 + [None]
    lines = _sh(transfer.stat_script(paths, sizes, signatures=True), path=f"{programs}:/usr/bin:/bin")
    states = transfer.parse_stat(paths, lines)
    assert [s.kind for s in states] == ["missing"] * 16
    assert [s.parent for s in states] == ["missing"] * 15 + ["dir"]
    assert not log.exists(), log.read_text()


def test_the_look_still_sees_files_folders_and_a_parent_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "one.txt").write_text("one\n")
    (tmp_path / "plain").write_text("not a folder\n")
    paths = [  # the paths to hash (a size given) first, as the callers order them
        str(tmp_path / "a" / "one.txt"),
        str(tmp_path / "a" / "two.txt"),
        str(tmp_path / "plain" / "x.txt"),
        str(tmp_path / "gone" / "y.txt"),
        str(tmp_path / "a"),
    ]
    sizes: list[int | None] = [4, 4, 4, 4, None]
    lines = _sh(transfer.stat_script(paths, sizes, signatures=True))
    states = {s.path: s for s in transfer.parse_stat(paths, lines)}
    one = states[paths[0]]
    assert (one.kind, one.parent, one.size) == ("file", "dir", 4)
    assert one.owner == pwd.getpwuid(os.getuid()).pw_name
    assert transfer.parse_sums(lines)[paths[0]] == transfer.local_sha256(paths[0])
    assert (states[paths[1]].kind, states[paths[1]].parent) == ("missing", "dir")
    assert (states[paths[2]].kind, states[paths[2]].parent) == ("missing", "other")
    assert (states[paths[3]].kind, states[paths[3]].parent) == ("missing", "missing")
    assert states[paths[4]].kind == "dir"


def test_the_quick_look_gives_numeric_owners_unless_names_are_asked_for(tmp_path: Path) -> None:
    (tmp_path / "f.txt").write_text("x\n")
    paths = [str(tmp_path / "f.txt")]
    numeric = " ".join(_sh(transfer.quick_script(paths, names=False)))
    named = " ".join(_sh(transfer.quick_script(paths)))
    uid, name = os.getuid(), pwd.getpwuid(os.getuid()).pw_name
    assert f" {uid} " in numeric.split("\037")[0].split(str(tmp_path))[0]
    assert f" {name}:{uid} " in named.split(str(tmp_path))[0]  # names with their ids
