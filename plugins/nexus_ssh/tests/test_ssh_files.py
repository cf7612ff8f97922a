"""End to end: ``upload``, ``template`` and ``download`` through the real CLI over SFTP on the sshd bed.

The bed's hosts are one machine: each test writes under a folder of its own, and a path per
host (``hostname()`` in the path) when several hosts take part.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from nexus_core.testing import NexusProject, Outcome
from nexus_core.testing.sshbed import USER_KEY, SshBed

pytestmark = pytest.mark.ssh

H1, H2, H3 = "127.0.0.2", "127.0.0.3", "127.0.0.4"


@pytest.fixture
def project(nexus_project: NexusProject, sshbed: SshBed) -> NexusProject:
    nexus_project.env["NEXUS_SSH_CONFIG"] = ""
    nexus_project.env.pop("SSH_AUTH_SOCK", None)
    return nexus_project


@pytest.fixture
def folder() -> Iterator[Path]:
    """A folder on the bed's machine that the login user owns (removed after)."""
    path = Path(f"/tmp/nexus-files-{uuid.uuid4().hex[:8]}")
    path.mkdir()
    shutil.chown(path, USER_KEY, USER_KEY)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def write(project: NexusProject, bed: SshBed, body: str) -> None:
    import textwrap

    head = (
        "from nexus_core import config, download, hostname, run, task, template, upload\n"
        f"config(ssh_user={USER_KEY!r}, ssh_identity={bed.key_path('ed25519')!r}, "
        f"ssh_known_hosts_file={bed.known_hosts!r}, ssh_port={bed.port!r})\n"
    )
    project.write(head + textwrap.dedent(body).lstrip("\n"))


def run(project: NexusProject, *args: str, timeout: float = 120) -> Outcome:
    return project.run(*args, timeout=timeout)


def sha(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def big_file(path: Path, megabytes: int) -> Path:
    block = os.urandom(1 << 20)
    with open(path, "wb") as f:
        for i in range(megabytes):
            f.write(block[:-8] + i.to_bytes(8, "big"))
    return path


def stops(out: Outcome) -> list[dict[str, Any]]:
    return out.of("transfer.stop")


def test_a_200_mb_upload_arrives_verified_and_a_rerun_sends_nothing(
    project: NexusProject, sshbed: SshBed, folder: Path
) -> None:
    source = big_file(project.root / "big.bin", 200)
    write(
        project,
        sshbed,
        f"""
        @task(on=["{H1}"])
        def ship():
            upload("big.bin", "{folder}/")
    """,
    )
    first = run(project, "run", "ship", "--format", "json", timeout=300)
    assert first.code == 0, first
    assert sha(folder / "big.bin") == sha(source)
    [stop] = stops(first)
    assert stop["changed"] and stop["bytes"] == 200 << 20 and stop["sha256"] == sha(source)
    assert first.of("transfer.progress"), "a 200 MB file reports progress"
    assert not [p for p in folder.iterdir() if p.name.startswith(".")], "no temporary file is left"
    again = run(project, "run", "ship", "--format", "json", timeout=300)
    assert again.code == 0, again
    [stop] = stops(again)
    assert not stop["changed"] and stop["bytes"] == 0 and stop["unchanged_files"] == 1
    [cmd] = again.of("command.stop")
    assert cmd["changed"] is False and cmd["reason"] == "unchanged"


def test_a_killed_upload_resumes_where_it_stopped(
    project: NexusProject, sshbed: SshBed, folder: Path
) -> None:
    source = big_file(project.root / "big.bin", 200)
    write(
        project,
        sshbed,
        f"""
        @task(on=["{H1}"])
        def ship():
            upload("big.bin", "{folder}/big.bin")
    """,
    )
    env = {**os.environ, "NO_COLOR": "1", "CI": "1", **project.env}
    for name in ("NEXUS_CONFIG", "NEXUS_LOAD_PLUGINS", "NEXUS_POLICY_FILE"):
        env.pop(name, None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "nexus_core", "run", "ship", "--format", "json"],
        cwd=project.root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    # The host is this machine: watch the temporary file grow and kill at 30 MB. (Progress
    # events come every 0.5 s; an idle machine sends the whole file in about that time.)
    killed_at = 0
    try:
        deadline = time.monotonic() + 120
        while not killed_at and proc.poll() is None and time.monotonic() < deadline:
            for part in [p for p in folder.iterdir() if p.name.endswith(".part")]:
                with contextlib.suppress(OSError):
                    if part.stat().st_size >= 30 << 20:
                        proc.send_signal(signal.SIGKILL)
                        killed_at = part.stat().st_size
            time.sleep(0.002)
    finally:
        proc.kill()
        proc.wait(30)
    assert killed_at, "the transfer ended before it could be killed"
    assert not (folder / "big.bin").exists(), "nothing at the destination until the file is complete"
    parts = [p for p in folder.iterdir() if p.name.endswith(".part")]
    assert len(parts) == 1
    # The host's sftp-server still writes what it had received when the client died: wait
    # (bounded) until the temporary file stops growing before taking its size.
    kept, deadline = -1, time.monotonic() + 15
    while time.monotonic() < deadline and parts[0].stat().st_size != kept:
        kept = parts[0].stat().st_size
        time.sleep(0.3)
    assert 0 < kept < 200 << 20
    again = run(project, "run", "ship", "--format", "json", timeout=300)
    assert again.code == 0, again
    [stop] = stops(again)
    assert stop["resumed"] == kept and stop["bytes"] == (200 << 20) - kept, stop
    assert sha(folder / "big.bin") == sha(source)
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]


def test_sudo_writes_into_a_root_owned_folder_with_owner_and_mode(
    project: NexusProject, sshbed: SshBed, folder: Path
) -> None:
    locked = folder / "etc"
    locked.mkdir(mode=0o755)
    shutil.chown(locked, "root", "root")
    (project.root / "app.conf").write_text("key = 1\n")
    write(
        project,
        sshbed,
        f"""
        @task(on=["{H1}"])
        def plain():
            upload("app.conf", "{locked}/app.conf")

        @task(on=["{H1}"])
        def rooted():
            upload("app.conf", "{locked}/app.conf", sudo=True, owner="nexus_nosudo", mode=0o640)
    """,
    )
    denied = run(project, "run", "plain")
    assert denied.code == 1, denied
    assert (
        "permission denied" in denied.stderr and str(locked) in denied.stderr and "sudo=True" in denied.stderr
    )
    assert H1 in denied.stderr
    assert list(locked.iterdir()) == []
    done = run(project, "run", "rooted", "--format", "json")
    assert done.code == 0, done
    st = (locked / "app.conf").stat()
    assert (locked / "app.conf").read_text() == "key = 1\n"
    assert oct(st.st_mode & 0o7777) == oct(0o640)
    import pwd

    assert pwd.getpwuid(st.st_uid).pw_name == "nexus_nosudo"
    assert list(locked.iterdir()) == [locked / "app.conf"], "no temporary file is left"
    again = run(project, "run", "rooted", "--format", "json")
    assert again.code == 0 and not stops(again)[0]["changed"], again


def test_an_owner_given_as_a_number_is_compared_by_number_and_a_nameless_owner_is_kept(
    project: NexusProject, sshbed: SshBed, folder: Path
) -> None:
    """owner="65534" was compared with the owner's name (nobody) and so written again at every
    run, notifying its handlers each time; a file owned by an id without a name (stat says
    UNKNOWN) is given back that id under sudo=True, not the word UNKNOWN."""
    (project.root / "app.conf").write_text("key = 1\n")
    (project.root / "site").mkdir()
    (project.root / "site" / "a.txt").write_text("a\n")
    nameless = folder / "nameless.conf"
    nameless.write_text("old\n")
    os.chown(nameless, 54321, 54321)
    write(
        project,
        sshbed,
        f"""
        @task(on=["{H1}"])
        def owned():
            upload("app.conf", "{folder}/app.conf", sudo=True, owner="65534", group="65534")
            upload("site", "{folder}/site", recursive=True, sudo=True, owner="65534")
            upload("app.conf", "{nameless}", sudo=True)
            upload("app.conf", "{folder}/zeros.conf", sudo=True, owner="+65534", group="065534")
    """,
    )
    first = run(project, "run", "owned", "--format", "json")
    assert first.code == 0, first
    assert [s["changed"] for s in stops(first)] == [True, True, True, True]
    assert (folder / "app.conf").stat().st_uid == 65534 and (folder / "app.conf").stat().st_gid == 65534
    assert (folder / "site" / "a.txt").stat().st_uid == 65534
    kept = nameless.stat()
    assert nameless.read_text() == "key = 1\n" and (kept.st_uid, kept.st_gid) == (54321, 54321)
    for _ in range(2):
        again = run(project, "run", "owned", "--format", "json")
        assert again.code == 0, again
        assert [s["changed"] for s in stops(again)] == [False, False, False, False], again


def test_hosts_sharing_a_file_system_never_share_a_temporary_file(
    project: NexusProject, sshbed: SshBed, folder: Path
) -> None:
    """The bed's three hosts are one machine, one home: as an NFS home, or one server reached
    as two users. The same bytes to each (sudo: through the one staging folder of that home)
    and to one shared path, all at once: each host had its own temporary file."""
    locked = folder / "etc"
    locked.mkdir(mode=0o755)
    shutil.chown(locked, "root", "root")
    write(
        project,
        sshbed,
        f"""
        @task(on=["{H1}", "{H2}", "{H3}"])
        def ship():
            upload("shared.txt", f"{locked}/app-{{hostname()}}.txt", sudo=True)
            upload("shared.txt", "{folder}/one.txt")
            upload("shared.txt", f"{folder}/mine-{{hostname()}}.txt")
    """,
    )
    for round_ in range(4):  # new bytes each round: nothing is unchanged, every host writes
        (project.root / "shared.txt").write_text(f"round {round_}\n" * 5000)
        out = run(project, "run", "ship", "--format", "json")
        assert out.code == 0, out
        wanted = sha(project.root / "shared.txt")
        written = [*locked.iterdir(), *folder.glob("*.txt")]
        assert len(written) == 7 and all(sha(p) == wanted for p in written), written
        assert not [p for p in [*folder.iterdir(), *locked.iterdir()] if p.name.startswith(".")]


def test_names_with_a_backslash_or_a_newline_go_and_come_back(
    project: NexusProject, sshbed: SshBed, folder: Path
) -> None:
    """``sha256sum`` escapes such names (its line then starts with a backslash). A tree's
    missing destination is made, with its missing parents."""
    tree = project.root / "tree"
    tree.mkdir()
    (tree / "back\\slash").write_text("one\n")
    (tree / "nl\nname").write_text("two\n")
    (tree / "plain").write_text("three\n")
    (project.root / "back\\slash").write_text("four\n")
    write(
        project,
        sshbed,
        f"""
        @task(on=["{H1}"])
        def ship():
            upload("back\\\\slash", "{folder}/single\\\\name")
            upload("tree", "{folder}/new/tree", recursive=True)  # `to` and its parent are made

        @task(on=["{H1}"], deps=[ship])
        def fetch():
            download("{folder}/single\\\\name", "got/back\\\\slash")
    """,
    )
    for _ in range(2):  # the second run finds everything in place
        out = run(project, "run", "fetch", "--format", "json")
        assert out.code == 0, out
    assert (folder / "single\\name").read_text() == "four\n"
    assert {p.name: p.read_text() for p in (folder / "new" / "tree").iterdir()} == {
        "back\\slash": "one\n",
        "nl\nname": "two\n",
        "plain": "three\n",
    }
    assert (project.root / "got" / "back\\slash").read_text() == "four\n"
    assert [s["changed"] for s in stops(out)][:2] == [False, False], stops(out)


def test_a_template_dry_run_shows_the_diff_and_writes_nothing(
    project: NexusProject, sshbed: SshBed, folder: Path
) -> None:
    project.write("port = {{ port }}\nname = {{ host.name }}\n", "app.conf.j2")
    body = f"""
        import os
        @task(on=["{H1}", "{H2}"])
        def conf():
            port = int(os.environ.get("PORT", "1"))
            template("app.conf.j2", f"{folder}/app-{{hostname()}}.conf", vars={{"port": port}})
    """
    write(project, sshbed, body)
    first = run(project, "run", "conf")
    assert first.code == 0, first
    target = folder / f"app-{H1}.conf"
    assert target.read_text() == f"port = 1\nname = {H1}\n"
    before = (target.stat().st_mtime_ns, target.read_bytes())
    dry = project.run("run", "conf", "-n", env={"PORT": "2"})
    assert dry.code == 0, dry
    assert "-port = 1" in dry.stdout and "+port = 2" in dry.stdout, dry
    assert "would change" in dry.stdout
    assert (target.stat().st_mtime_ns, target.read_bytes()) == before
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]
    same = run(project, "run", "conf", "-n")
    assert same.code == 0 and "unchanged" in same.stdout and "+port" not in same.stdout, same


def test_a_failing_validation_keeps_the_old_file(project: NexusProject, sshbed: SshBed, folder: Path) -> None:
    target = folder / "sudoers"
    target.write_text("old\n")
    project.write("{{ text }}\n", "rule.j2")
    write(
        project,
        sshbed,
        f"""
        import os
        @task(on=["{H1}"])
        def rule():
            template("rule.j2", "{target}", vars={{"text": os.environ.get("TEXT", "good")}},
                     validate="grep -q good {{path}} || {{ echo 'rule is not good' >&2; exit 3; }}")
    """,
    )
    bad = project.run("run", "rule", env={"TEXT": "bad"})
    assert bad.code == 1, bad
    assert target.read_text() == "old\n"
    assert "validation" in bad.stderr and "rule is not good" in bad.stderr, bad
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]
    good = run(project, "run", "rule")
    assert good.code == 0, good
    assert target.read_text() == "good\n"


def test_host_side_problems_are_named_and_nothing_is_half_written(
    project: NexusProject, sshbed: SshBed, folder: Path
) -> None:
    (folder / "adir").mkdir()
    shutil.chown(folder / "adir", USER_KEY, USER_KEY)
    (project.root / "f.txt").write_text("x\n")
    write(
        project,
        sshbed,
        f"""
        @task(on=["{H1}"])
        def into_dir():
            upload("f.txt", "{folder}/adir")

        @task(on=["{H1}"])
        def no_parent():
            upload("f.txt", "{folder}/missing/f.txt")
    """,
    )
    out = run(project, "run", "into_dir")
    assert out.code == 1 and f"{folder}/adir" in out.stderr and "is a folder" in out.stderr, out
    assert "end `to` with /" in out.stderr
    out = run(project, "run", "no_parent")
    assert out.code == 1 and f"{folder}/missing does not exist" in out.stderr and "mkdir -p" in out.stderr, (
        out
    )
    assert sorted(p.name for p in folder.iterdir()) == ["adir"] and list((folder / "adir").iterdir()) == []


def test_a_full_disk_is_reported_and_leaves_nothing(
    project: NexusProject, sshbed: SshBed, folder: Path
) -> None:
    from nexus_core.testing.tmpfs import small_tmpfs

    with small_tmpfs(folder / "small") as small:
        big_file(project.root / "big.bin", 3)
        write(
            project,
            sshbed,
            f"""
            @task(on=["{H1}"])
            def fill():
                upload("big.bin", "{small}/big.bin")
        """,
        )
        out = run(project, "run", "fill")
        assert out.code == 1, out
        assert "no space left" in out.stderr and str(small) in out.stderr and H1 in out.stderr, out
        assert list(small.iterdir()) == [], "neither the file nor its temporary file stays"


def test_a_tree_goes_to_three_hosts_and_comes_back(
    project: NexusProject, sshbed: SshBed, folder: Path
) -> None:
    site = project.root / "site"
    (site / "css").mkdir(parents=True)
    for i in range(30):
        (site / f"page{i}.html").write_text(f"<p>{i}</p>\n")
    (site / "css" / "main.css").write_text("body {}\n")
    write(
        project,
        sshbed,
        f"""
        @task(on=["{H1}", "{H2}", "{H3}"])
        def publish():
            upload("site", f"{folder}/www-{{hostname()}}", recursive=True)
            download(f"{folder}/www-{{hostname()}}/css/main.css", f"back/{{hostname()}}/main.css")
    """,
    )
    out = run(project, "run", "publish", "--format", "json")
    assert out.code == 0, out
    for h in (H1, H2, H3):
        root = folder / f"www-{h}"
        assert sorted(p.name for p in root.iterdir()) == sorted(
            [*(f"page{i}.html" for i in range(30)), "css"]
        )
        assert (root / "page7.html").read_text() == "<p>7</p>\n"
        assert (project.root / "back" / h / "main.css").read_text() == "body {}\n"
    (site / "page3.html").write_text("changed\n")
    again = run(project, "run", "publish", "--format", "json")
    assert again.code == 0, again
    uploads = [s for s in stops(again) if s["op"] == "upload"]
    assert [s["changed_files"] for s in uploads] == [1, 1, 1]
    assert all(not s["changed"] for s in stops(again) if s["op"] == "download")


def test_a_tree_keeps_content_mode_and_mtime_with_and_without_sudo(
    project: NexusProject, sshbed: SshBed, folder: Path
) -> None:
    """More files than the SFTP series keeps in flight, files of several writes, an empty file,
    a file its owner cannot read (the script path), a big file (the resumable path); as the
    login user and as root into a root-owned folder."""
    import pwd

    tree = project.root / "tree"
    (tree / "sub").mkdir(parents=True)
    expected: dict[str, tuple[bytes, int, int]] = {}

    def put(rel: str, data: bytes, mode: int, when: int) -> None:
        path = tree / rel
        path.write_bytes(data)
        path.chmod(mode)
        os.utime(path, (when, when))
        expected[rel] = (data, mode, when)

    for i in range(150):
        name = f"sub/f{i}.txt" if i % 2 else f"f{i}.txt"
        put(name, f"file {i}\n".encode() * (i + 1), 0o644, 1_500_000_000 + i)
    put("empty", b"", 0o600, 1_400_000_000)
    put("several-writes.bin", os.urandom(100_000), 0o755, 1_400_000_001)
    put("readonly.txt", b"read only\n", 0o444, 1_400_000_002)
    put("write-only.txt", b"write only\n", 0o200, 1_400_000_003)
    put("big.bin", os.urandom(3 << 20), 0o640, 1_400_000_004)
    locked = folder / "rooted"
    locked.mkdir(mode=0o755)
    shutil.chown(locked, "root", "root")
    write(
        project,
        sshbed,
        f"""
        @task(on=["{H1}"])
        def plain():
            upload("tree", "{folder}/plain", recursive=True)

        @task(on=["{H1}"])
        def rooted():
            upload("tree", "{locked}/tree", recursive=True, sudo=True)
    """,
    )
    for name, root, owner in (("plain", folder / "plain", USER_KEY), ("rooted", locked / "tree", "root")):
        out = run(project, "run", name, "--format", "json")
        assert out.code == 0, out
        found = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}
        assert found == set(expected), sorted(found ^ set(expected))  # no temporary file left
        for rel, (data, mode, when) in expected.items():
            st = (root / rel).stat()
            assert (root / rel).read_bytes() == data, rel
            assert (rel, oct(st.st_mode & 0o7777)) == (rel, oct(mode))
            assert (rel, int(st.st_mtime)) == (rel, when)
            assert pwd.getpwuid(st.st_uid).pw_name == owner, rel
        again = run(project, "run", name, "--format", "json")
        assert again.code == 0, again
        [stop] = stops(again)
        # the login user cannot read write-only.txt to compare it: written again (root can)
        unreadable = 1 if name == "plain" else 0
        counts = {k: stop[k] for k in ("changed_files", "unchanged_files", "files")}
        assert counts == {"changed_files": unreadable, "unchanged_files": len(expected) - unreadable,
                          "files": len(expected)}, counts  # fmt: skip


def test_a_rerun_trusts_kept_checksums_yet_sees_changes_made_on_either_side(
    project: NexusProject, sshbed: SshBed, folder: Path
) -> None:
    """Checksums kept between runs (nexus_core.checksum_cache) skip re-hashing an unchanged
    tree, while a file changed on the host behind Nexus's back (same size, old mtime put
    back) and one changed locally are both sent again, and notify."""
    import sqlite3

    site = project.root / "site"
    site.mkdir()
    for i in range(6):
        (site / f"f{i}.txt").write_text(f"file {i}\n")
    dest = folder / "www"
    write(
        project,
        sshbed,
        f"""
        from nexus_core import handler

        @handler
        def reload():
            run("echo reloaded")

        @task(on=["{H1}"])
        def publish():
            upload("site", "{dest}", recursive=True, notify=reload)
    """,
    )
    first = run(project, "run", "publish", "--format", "json")
    assert first.code == 0, first
    assert [s["changed_files"] for s in stops(first)] == [6]
    cache = Path(project.env["XDG_CACHE_HOME"]) / "nexus" / "checksums.db"
    with sqlite3.connect(cache) as db:
        kept = dict(db.execute("SELECT path, sha256 FROM remote"))
    assert kept == {str(dest / f"f{i}.txt"): sha(site / f"f{i}.txt") for i in range(6)}

    again = run(project, "run", "publish", "--format", "json")
    assert again.code == 0, again
    assert [(s["changed"], s["changed_files"], s["unchanged_files"]) for s in stops(again)] == [(False, 0, 6)]
    assert again.of("handler.stop") == []

    on_host = dest / "f1.txt"
    before = on_host.stat()
    on_host.write_text("FILE 1\n")  # same size, other bytes, mtime put back: only the ctime moved
    os.utime(on_host, ns=(before.st_atime_ns, before.st_mtime_ns))
    (site / "f4.txt").write_text("file 4!\n")
    third = run(project, "run", "publish", "--format", "json")
    assert third.code == 0, third
    assert [(s["changed"], s["changed_files"]) for s in stops(third)] == [(True, 2)]
    assert on_host.read_text() == "file 1\n" and (dest / "f4.txt").read_text() == "file 4!\n"
    assert [e["handler"] for e in third.of("handler.stop")] == ["reload"]

    fourth = run(project, "run", "publish", "--format", "json", "--dry-run")
    assert fourth.code == 0, fourth
    fifth = run(project, "run", "publish", "--format", "json")
    assert [s["changed"] for s in stops(fifth)] == [False] and fifth.of("handler.stop") == []

    # a re-run first looks at the files it wrote there before (one stat record each): it
    # still sees a mode changed on the host, a file gone, a new local file in a new
    # folder, and a folder where a file was
    (dest / "f2.txt").chmod(0o600)
    (dest / "f3.txt").unlink()
    (site / "new").mkdir()
    (site / "new" / "f7.txt").write_text("file 7\n")
    dry = run(project, "run", "publish", "--dry-run")
    assert dry.code == 0 and "would change 3 of 7 files" in dry.stdout, dry
    assert not (dest / "f3.txt").exists() and (dest / "f2.txt").stat().st_mode & 0o777 == 0o600
    sixth = run(project, "run", "publish", "--format", "json")
    assert [(s["changed"], s["changed_files"]) for s in stops(sixth)] == [(True, 3)]
    assert (dest / "f2.txt").stat().st_mode & 0o777 == (site / "f2.txt").stat().st_mode & 0o777
    assert (dest / "f3.txt").read_text() == "file 3\n" and (dest / "new" / "f7.txt").read_text() == "file 7\n"
    assert [e["handler"] for e in sixth.of("handler.stop")] == ["reload"]
    (dest / "f5.txt").unlink()
    (dest / "f5.txt").mkdir()
    seventh = run(project, "run", "publish")
    said = seventh.stdout + seventh.stderr
    assert seventh.code != 0 and f"{dest / 'f5.txt'} on" in said and "is a folder" in said, seventh


def test_signatures_after_a_write_stand_by_their_set_time_or_by_a_second_hash(
    make_executor: Any, sshbed: SshBed, folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After writing, a file still showing the whole-second time it was given before its
    checksum was verified keeps its signature without being read again; one whose time
    moved since (written behind Nexus's back) is hashed once more: kept when the bytes are
    still the verified ones, not kept when they are not (the next run then hashes it)."""
    import sqlite3

    from nexus_core import checksum_cache, transfer
    from nexus_core.model import Host

    db = tmp_path / "sums.db"
    monkeypatch.setenv("NEXUS_CHECKSUM_CACHE", str(db))
    checksum_cache.forget()
    executor, _ = make_executor()
    host = Host(H1, port=sshbed.port)
    paths = {name: folder / f"{name}.txt" for name in ("kept", "touched", "rewritten")}
    for p in paths.values():
        p.write_text("verified bytes\n")
        os.utime(p, (1_600_000_000, 1_600_000_000))
    good = hashlib.sha256(b"verified bytes\n").hexdigest()
    os.utime(paths["touched"])  # the time moved, the bytes did not
    paths["rewritten"].write_text("other  bytes\n")  # same size, other bytes, a new time
    time.sleep(0.1)  # every change time one clock tick old
    try:
        done = [(str(p), good, 1_600_000_000) for p in paths.values()]
        transfer._remember_written(executor, host, done, False)
        with sqlite3.connect(db) as con:
            kept = dict(con.execute("SELECT path, sha256 FROM remote"))
        assert kept == {str(paths["kept"]): good, str(paths["touched"]): good}
    finally:
        checksum_cache.forget()


def test_a_fifo_on_the_host_is_refused_at_once_and_never_read(
    project: NexusProject, sshbed: SshBed, folder: Path
) -> None:
    """A FIFO at an upload's or a template's destination, or as a download's source, is
    never opened on the host (a reader would block until the look's timeout): each is
    refused at once, naming host and path, and a dry run says so too."""
    fifo = folder / "fifo"
    os.mkfifo(fifo)
    shutil.chown(fifo, USER_KEY, USER_KEY)
    (project.root / "f.txt").write_text("x\n")
    project.write("a = {{ a }}\n", "t.j2")
    write(
        project,
        sshbed,
        f"""
        @task(on=["{H1}"])
        def up():
            upload("f.txt", "{fifo}")

        @task(on=["{H1}"])
        def tpl():
            template("t.j2", "{fifo}", vars={{"a": 1}}, sudo=True)

        @task(on=["{H1}"])
        def down():
            download("{fifo}", "got.txt")
    """,
    )
    said = f"{fifo} on {H1} is a FIFO (not a regular file)"
    for name in ("up", "tpl", "down"):
        started = time.monotonic()
        out = run(project, "run", name, timeout=60)
        assert out.code == 1, out
        assert time.monotonic() - started < 20, "refused at once, not after the look's timeout"
        assert said in out.stderr and "could not look" not in out.stderr, out
        dry = run(project, "run", name, "-n", timeout=60)
        assert said in dry.stdout, dry
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and sorted(p.name for p in folder.iterdir()) == ["fifo"]
    assert not (project.root / "got.txt").exists()


def test_a_look_that_does_not_answer_stops_on_the_runs_cancel(
    make_executor: Any, sshbed: SshBed, folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The look at an upload's destination (its script made to hang here, as on a stuck
    file system) gets the run's cancel as any command does: STOP lets it go on, a second
    SIGTERM's KILL stops it on the host at once, not after the script's 120 s timeout."""
    import threading

    from nexus_core import checksum_cache, transfer
    from nexus_core.api import Cancel, CommandResult
    from nexus_core.model import Host, Transfer

    monkeypatch.setenv("NEXUS_CHECKSUM_CACHE", "off")
    checksum_cache.forget()
    monkeypatch.setattr(transfer, "_STAT_LIB", "sleep 30\n" + transfer._STAT_LIB)
    executor, _ = make_executor()
    host = Host(H1, port=sshbed.port)
    source = tmp_path / "f.txt"
    source.write_text("x\n")
    dest = f"{folder}/f.txt"
    op = Transfer(cmd=f"upload f.txt -> {dest}", kind="upload", src=str(source), dest=dest)
    reporter = transfer.Reporter(lambda _e: None, "t", "ship", H1, 0)
    cancel = Cancel()
    got: list[CommandResult] = []
    worker = threading.Thread(
        target=lambda: got.append(transfer.execute(executor, host, op, reporter, cancel, 60))
    )
    worker.start()
    time.sleep(1.0)  # the look is running on the host
    cancel.raise_to(Cancel.STOP)
    worker.join(0.5)
    assert worker.is_alive(), "STOP lets the running operation go on"
    stopped = time.monotonic()
    cancel.raise_to(Cancel.KILL)
    worker.join(10)
    assert not worker.is_alive() and time.monotonic() - stopped < 5
    [result] = got
    assert result.status == "interrupted" and f"could not look at {dest} on {H1}" in result.reason, result
    assert not (folder / "f.txt").exists()
    checksum_cache.forget()


@pytest.mark.parametrize("where", ["fifo", "under_a_file"])
def test_a_download_refuses_a_local_fifo_and_a_file_on_the_way(
    project: NexusProject, sshbed: SshBed, folder: Path, where: str
) -> None:
    """Over SSH as locally: a local `to` that is a FIFO is never replaced, and a folder of
    `to` that is a file fails naming both paths, not as an executor's Python exception."""
    (folder / "src.txt").write_text("bytes\n")
    os.mkfifo(project.root / "fifo")
    (project.root / "plain").write_text("a file\n")
    to = "fifo" if where == "fifo" else "plain/x.txt"
    write(
        project,
        sshbed,
        f"""
        @task(on=["{H1}"])
        def get():
            download("{folder}/src.txt", "{to}")
    """,
    )
    out = run(project, "run", "get")
    assert out.code == 1, out
    if where == "fifo":
        assert f"local path {project.root / 'fifo'} is a FIFO (not a regular file)" in out.stderr, out
    else:
        assert f"{project.root / 'plain'} is a file, not a folder" in out.stderr, out
    assert "executor 'ssh'" not in out.stderr and "FileExistsError" not in out.stderr, out
    assert stat.S_ISFIFO(os.lstat(project.root / "fifo").st_mode)
    assert (project.root / "plain").read_text() == "a file\n"


def test_a_sudo_template_dry_run_reads_a_root_only_file_to_show_the_diff(
    project: NexusProject, sshbed: SshBed, folder: Path
) -> None:
    """With sudo=True a dry run reads the current root-only file as root (read only) and
    shows the diff, secrets redacted as ever; without sudo the note stays."""
    locked = folder / "x"
    locked.mkdir(mode=0o755)
    shutil.chown(locked, "root", "root")
    target = locked / "validated.conf"
    target.write_text("port = 1\nname = old\n")
    shutil.chown(target, "root", "root")
    target.chmod(0o600)
    other = folder / "other.conf"  # in a folder the login user may write in: no other problem
    shutil.copy(target, other)
    shutil.chown(other, "root", "root")
    other.chmod(0o600)
    project.write("port = {{ port }}\nname = old\n", "v.j2")
    write(
        project,
        sshbed,
        f"""
        @task(on=["{H1}"])
        def rooted():
            template("v.j2", "{target}", vars={{"port": 2}}, sudo=True, mode=0o600)

        @task(on=["{H1}"])
        def plain():
            template("v.j2", "{other}", vars={{"port": 2}}, mode=0o600)
    """,
    )
    before = (target.stat().st_mtime_ns, target.read_bytes())
    dry = run(project, "run", "rooted", "-n")
    assert dry.code == 0, dry
    assert "-port = 1" in dry.stdout and "+port = 2" in dry.stdout, dry
    assert "cannot be read without sudo" not in dry.stdout, dry
    assert (target.stat().st_mtime_ns, target.read_bytes()) == before
    assert sorted(p.name for p in locked.iterdir()) == ["validated.conf"]
    plain = run(project, "run", "plain", "-n")
    assert "(the current file cannot be read without sudo: no diff)" in plain.stdout, plain
    assert "-port = 1" not in plain.stdout, plain


def test_a_tree_with_an_empty_folder_and_inner_links_arrives_over_ssh(
    project: NexusProject, sshbed: SshBed, folder: Path
) -> None:
    """Empty folders are created on the host; a link to a file inside the tree arrives as
    that file's bytes; a link out of the tree is refused before anything runs."""
    tree = project.root / "ltree"
    (tree / "real").mkdir(parents=True)
    (tree / "real" / "file").write_text("inside\n")
    (tree / "empty").mkdir()
    os.symlink("real/file", tree / "filelink")
    write(
        project, sshbed, f'@task(on=["{H1}"])\ndef up():\n    upload("ltree", "{folder}/", recursive=True)\n'
    )
    done = run(project, "run", "up")
    assert done.code == 0, done
    assert (folder / "ltree" / "empty").is_dir() and (folder / "ltree" / "filelink").read_text() == "inside\n"
    os.symlink("/etc/hostname", tree / "link_out")
    refused = run(project, "run", "up")
    assert refused.code == 2, refused
    assert "link_out -> /etc/hostname" in refused.stderr and "outside the folder" in refused.stderr, refused
    assert not (folder / "ltree" / "link_out").exists()


def test_a_tree_into_folders_the_login_user_may_not_make_says_why(
    project: NexusProject, sshbed: SshBed, folder: Path
) -> None:
    """A recursive upload whose folders cannot be made said only 'exit code 1': which folder
    and the sudo advice are in the report. The dry run says so too: it said "would change"
    (only the destination's direct parent was looked at, and it did not exist either)."""
    locked = folder / "locked"
    locked.mkdir(mode=0o755)
    shutil.chown(locked, "root", "root")
    (project.root / "dist").mkdir()
    (project.root / "dist" / "app.py").write_text("print(1)\n")
    write(
        project,
        sshbed,
        f"""
        @task(on=["{H1}"])
        def ship():
            upload("dist/", "{locked}/app/", recursive=True)
    """,
    )
    said = f"on {H1}: the login user may not write in {locked}"
    dry = run(project, "run", "ship", "-n")
    assert f"permission denied: cannot create {locked}/app/" in dry.stdout and said in dry.stdout, dry
    out = run(project, "run", "ship")
    assert out.code == 1, out
    assert f"permission denied: cannot create {locked}/app" in out.stderr and said in out.stderr, out
    assert "sudo=True" in out.stderr, out
    assert list(locked.iterdir()) == []


def test_long_names_and_paths_full_of_quotes_go_and_come_back(
    project: NexusProject, sshbed: SshBed, folder: Path
) -> None:
    """A 250-byte name gets a temporary name within the 255-byte limit (cut, with a digest);
    300 names of 240 quotes, each quote growing to 17 characters once a script is quoted
    for the shell and then for ``sh -c``, are spread over scripts within Linux's 128 KiB
    argument limit. Both as a tree (one tar stream) and file by file."""
    tree = project.root / "tree"
    tree.mkdir()
    for i in range(300):
        (tree / ("'" * 240 + f"{i:03d}")).write_text(f"{i}\n")
    long = "b" * 240 + "é" * 5
    (project.root / long).write_text("long\n")
    write(
        project,
        sshbed,
        f"""
        @task(on=["{H1}"])
        def ship():
            upload("tree", "{folder}/tree", recursive=True)
            upload({long!r}, "{folder}/")

        @task(on=["{H1}"], deps=[ship])
        def fetch():
            download("{folder}/" + {long!r}, "got/" + {long!r})
    """,
    )
    for changed in (True, False):
        out = run(project, "run", "fetch", "--format", "json")
        assert out.code == 0, out
        assert [s["changed"] for s in stops(out)] == [changed] * 3, stops(out)
    got = {p.name: p.read_text() for p in (folder / "tree").iterdir()}
    assert got == {"'" * 240 + f"{i:03d}": f"{i}\n" for i in range(300)}
    assert (folder / long).read_text() == "long\n"
    assert (project.root / "got" / long).read_text() == "long\n"
    assert not [p for p in folder.rglob(".*") if "nexus-" in p.name], "no temporary file stays behind"


def test_a_template_sees_the_login_user_and_port_from_config_or_the_host_string(
    project: NexusProject, sshbed: SshBed, folder: Path
) -> None:
    """``host.user`` and ``host.port`` are what the host is logged in as: the host string's,
    else ``ssh_user``/``ssh_port`` (they rendered as ``None`` when only config() set them)."""
    (project.root / "who.j2").write_text("user={{ host.user }} port={{ host.port }}\n")
    write(
        project,
        sshbed,
        f"""
        @task(on=["{H1}", "{USER_KEY}@{H2}:{sshbed.port}"])
        def who():
            template("who.j2", f"{folder}/who-{{hostname()}}")
    """,
    )
    out = run(project, "run", "who")
    assert out.code == 0, out
    texts = {p.read_text() for p in folder.iterdir()}
    assert texts == {f"user={USER_KEY} port={sshbed.port}\n"}, texts


def test_an_unchanged_tree_is_confirmed_by_its_print_and_every_change_is_still_seen(
    project: NexusProject, sshbed: SshBed, folder: Path
) -> None:
    """A run that finds a tree unchanged file by file keeps the host's look as one digest (the
    tree's print): the next run with nothing changed is confirmed by one look compared as a
    whole, no file compared. Whatever changed since, on either side or in the operation, is
    seen and done as before (and drops the print); the run after that finds the tree
    unchanged file by file and keeps a new print, and the next is confirmed again."""
    import sqlite3

    site = project.root / "site"
    (site / "css").mkdir(parents=True)
    (site / "empty").mkdir()
    for i in range(5):
        (site / f"p{i}.html").write_text(f"page {i}\n")
    (site / "css" / "a.css").write_text("body {}\n")
    dest = folder / "www"
    body = f'@task(on=["{H1}"])\ndef publish():\n    upload("site", "{dest}", recursive=True{{extra}})\n'
    write(project, sshbed, body.format(extra=""))

    def publish() -> tuple[tuple[bool, int, int], bool]:
        out = run(project, "run", "publish", "--format", "json", "--log-level", "debug")
        assert out.code == 0, out
        [stop] = stops(out)
        confirmed = "as its print says" in out.stderr
        return (stop["changed"], stop["changed_files"], stop["unchanged_files"]), confirmed

    def settled(files: int) -> None:
        """The first run after a change looks file by file (and keeps a print); the next is confirmed."""
        assert publish() == ((False, 0, files), False)
        assert publish() == ((False, 0, files), True)

    assert publish() == ((True, 6, 0), False)
    cache = Path(project.env["XDG_CACHE_HOME"]) / "nexus" / "checksums.db"
    settled(6)
    with sqlite3.connect(cache) as db:
        assert db.execute("SELECT files FROM trees").fetchall() == [(6,)]
    assert publish() == ((False, 0, 6), True)

    # on the host: other bytes of the same size with the old time put back (only the ctime moved)
    page = dest / "p1.html"
    before = page.stat()
    page.write_text("PAGE 1\n")
    os.utime(page, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert publish() == ((True, 1, 5), False) and page.read_text() == "page 1\n"
    with sqlite3.connect(cache) as db:  # a tree that changed keeps no print until found unchanged
        assert db.execute("SELECT look FROM trees").fetchall() == []
    settled(6)
    # on the host: a mode changed, a file removed, the empty folder removed
    (dest / "p2.html").chmod(0o600)
    assert publish()[0] == (True, 1, 5)
    assert (dest / "p2.html").stat().st_mode & 0o777 == (site / "p2.html").stat().st_mode & 0o777
    settled(6)
    (dest / "css" / "a.css").unlink()
    assert publish()[0] == (True, 1, 5) and (dest / "css" / "a.css").read_text() == "body {}\n"
    settled(6)
    (dest / "empty").rmdir()
    changed, confirmed = publish()
    assert changed[0] and not confirmed and (dest / "empty").is_dir()
    settled(6)
    # locally: a file changed, a file added
    (site / "p3.html").write_text("page 3, again\n")
    (site / "css" / "b.css").write_text("p {}\n")
    assert publish() == ((True, 2, 5), False)
    assert (dest / "p3.html").read_text() == "page 3, again\n" and (dest / "css" / "b.css").exists()
    settled(7)
    # the operation: a mode asked for is another print
    write(project, sshbed, body.format(extra=", mode=0o640"))
    assert publish() == ((True, 7, 0), False)
    assert all((dest / p).stat().st_mode & 0o777 == 0o640 for p in ("p0.html", "css/b.css"))
    settled(7)
    # a dry run never keeps or uses a print, and says what would change
    (dest / "p4.html").write_text("changed on the host\n")
    dry = run(project, "run", "publish", "--dry-run")
    assert dry.code == 0 and "would change 1 of 7 files" in dry.stdout, dry
    assert publish() == ((True, 1, 6), False) and (dest / "p4.html").read_text() == "page 4\n"
    settled(7)
