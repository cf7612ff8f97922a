"""``upload``, ``template`` and ``download`` on the local machine, through the real CLI.

The SSH side (SFTP, sudo, resume after kill -9, a full disk) is tested on the sshd bed in
plugins/nexus_ssh/tests/test_ssh_files.py; these tests hold for any executor.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from nexus_core.testing import NexusProject


def nexusfile(project: NexusProject, body: str) -> None:
    project.write("from nexus_core import download, run, task, template, upload\n" + body)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_upload_template_and_download_then_nothing_changes(nexus_project: NexusProject) -> None:
    root = nexus_project.root
    (root / "site" / "css").mkdir(parents=True)
    (root / "site" / "index.html").write_text("<h1>hi</h1>\n")
    (root / "site" / "css" / "a.css").write_text("a {}\n")
    (root / "app.bin").write_bytes(bytes(range(256)) * 1000)
    (root / "app.conf.j2").write_text("port = {{ port }}\ntask = {{ task.name }}\nhost = {{ host.name }}\n")
    (root / "out").mkdir()
    nexusfile(
        nexus_project,
        """
@task
def deploy():
    upload("app.bin", "out/")
    upload("site", "out/www", recursive=True)
    template("app.conf.j2", "out/app.conf", vars={"port": 8080}, mode=0o600)
    download("out/app.conf", "fetched/conf/app.conf")
""",
    )
    first = nexus_project.run("run", "deploy", "--format", "json")
    assert first.code == 0, first
    assert sha(root / "out" / "app.bin") == sha(root / "app.bin")
    assert (root / "out" / "www" / "css" / "a.css").read_text() == "a {}\n"
    assert (root / "out" / "app.conf").read_text() == "port = 8080\ntask = deploy\nhost = local\n"
    assert (root / "out" / "app.conf").stat().st_mode & 0o777 == 0o600
    assert (root / "fetched" / "conf" / "app.conf").read_text() == (root / "out" / "app.conf").read_text()
    stops = first.of("transfer.stop")
    assert [s["op"] for s in stops] == ["upload", "upload", "template", "download"]
    assert all(s["changed"] for s in stops) and stops[0]["sha256"] == sha(root / "app.bin")
    assert stops[1]["files"] == 2 and stops[1]["changed_files"] == 2
    assert all(c["changed"] for c in first.of("command.stop"))
    assert not [p for p in (root / "out").rglob(".*")], "no temporary file stays behind"
    again = nexus_project.run("run", "deploy", "--format", "json")
    assert again.code == 0, again
    assert [s["changed"] for s in again.of("transfer.stop")] == [False] * 4
    assert sum(s["bytes"] for s in again.of("transfer.stop")) == 0
    assert [c["reason"] for c in again.of("command.stop")] == ["unchanged"] * 4


def test_mistakes_in_file_operations_are_all_reported_before_anything_runs(nexus_project: NexusProject) -> None:
    root = nexus_project.root
    (root / "folder").mkdir()
    (root / "broken.j2").write_text("line one\n{% if x %}\nno end\n")
    (root / "undefined.j2").write_text("fine\nport = {{ prot }}\n")
    nexusfile(
        nexus_project,
        """
@task
def deploy():
    run("touch ran")
    upload("missing.txt", "/tmp/x")
    upload("folder", "/tmp/y")
    template("broken.j2", "/tmp/z")
    template("undefined.j2", "/tmp/w", vars={"port": 1})
    upload("folder", "/tmp/v", recursive=True, mode="rwx")
""",
    )
    out = nexus_project.run("run", "deploy")
    assert out.code == 2, out
    text = out.stdout + out.stderr
    assert "missing.txt" in text and "does not exist" in text
    assert "'folder' is a folder" in text and "recursive=True" in text
    assert "broken.j2:" in text and "syntax error" in text
    assert "undefined.j2:2" in text and "'prot' is undefined" in text
    assert "mode must be permission bits" in text
    assert not (root / "ran").exists()


def test_every_undefined_name_a_template_needs_is_named_at_once(nexus_project: NexusProject) -> None:
    """Not only the first: each name a render reaches, with its line; a name under an
    {% if %} that stays false is not needed; an undefined attribute of a value given is named
    and ends the search; past 21 names the list says that more may follow."""
    root = nexus_project.root
    (root / "app.j2").write_text(
        "port = {{ port }}\nname = {{ nme }}\n{% for u in users %}user = {{ u.name }}\n{% endfor %}"
        "{% if debug %}{{ trace }}{% endif %}\nlevel = {{ loglevel | upper }}\nrole = {{ host.vars.role }}\n"
    )
    nexusfile(nexus_project, '@task\ndef conf():\n    template("app.j2", "/tmp/nx-app.conf", vars={"port": 1})\n')
    out = nexus_project.run("validate", "--format", "json")
    assert out.code == 2, out
    problems = [p["message"] for p in out.json()["problems"]]
    assert problems == [
        "template app.j2:2: 'nme' is undefined",
        "template app.j2:3: 'users' is undefined",
        "template app.j2:4: 'debug' is undefined",
        "template app.j2:5: 'loglevel' is undefined",
        "template app.j2:6: 'role' is not defined ('dict object' has no attribute 'role')",
    ], problems
    (root / "many.j2").write_text("".join(f"{{{{ n{i} }}}}\n" for i in range(25)))
    nexusfile(nexus_project, '@task\ndef conf():\n    template("many.j2", "/tmp/nx-many.conf")\n')
    many = [p["message"] for p in nexus_project.run("validate", "--format", "json").json()["problems"]]
    assert len(many) == 22, many
    assert many[-1] == "template many.j2: more undefined names may follow (the search stops after 21)"
    # a filter that fails on an undefined value names no variable itself; names with digits
    # are different variables, each shown (not "more problems like these")
    (root / "f.j2").write_text(
        't = {{ obj | tojson }}\nq = {{ name | replace("a", "b") }}\n{{ v1 }}{{ v2 }}\n{{ v3 }}{{ v4 }}\n'
    )
    nexusfile(nexus_project, '@task\ndef conf():\n    template("f.j2", "/tmp/nx-f.conf", vars={"port": 1})\n')
    text = nexus_project.run("validate")
    assert text.code == 2 and "more problems" not in text.stderr + text.stdout, text
    for said in ("f.j2:1: 'obj'", "f.j2:2: 'name'", "f.j2:3: 'v1'", "f.j2:3: 'v2'", "f.j2:4: 'v3'", "f.j2:4: 'v4'"):
        assert said in text.stderr + text.stdout, (said, text)
    assert "TypeError" not in text.stderr + text.stdout


def test_a_missing_upload_source_in_a_task_with_deps_says_how_to_hand_it_over(nexus_project: NexusProject) -> None:
    """The deploying guide's first shape, in a fresh checkout: build makes dist/, deploy
    uploads it. Sources are checked before anything runs (exit 2, nothing runs); the hint
    said only "check the path", now it names artifact() in the task that makes it."""
    root = nexus_project.root
    nexusfile(
        nexus_project,
        f"""
@task
def build():
    run("mkdir -p dist && echo hi > dist/app.txt")

@task(deps=[build])
def deploy():
    upload("dist/", "{root}/out/", recursive=True)
""",
    )
    out = nexus_project.run("run", "deploy")
    assert out.code == 2, out
    assert "upload(): source 'dist/' does not exist" in out.stderr, out
    assert "if build makes it, declare it there with artifact('dist/')" in out.stderr, out
    assert not (root / "dist").exists()  # nothing ran


def test_a_dry_run_shows_the_diff_and_writes_nothing(nexus_project: NexusProject) -> None:
    root = nexus_project.root
    (root / "t.j2").write_text("a = {{ a }}\nsame\n")
    nexusfile(
        nexus_project,
        """
import os
@task
def conf():
    template("t.j2", "out/t.conf", vars={"a": os.environ.get("A", "1")})
""",
    )
    (root / "out").mkdir()
    assert nexus_project.run("run", "conf").code == 0
    target = root / "out" / "t.conf"
    before = (target.stat().st_mtime_ns, target.read_bytes())
    dry = nexus_project.run("run", "conf", "-n", env={"A": "2"})
    assert dry.code == 0, dry
    assert "would change" in dry.stdout and "-a = 1" in dry.stdout and "+a = 2" in dry.stdout
    assert (target.stat().st_mtime_ns, target.read_bytes()) == before
    assert sorted(p.name for p in (root / "out").iterdir()) == ["t.conf"]
    as_json = nexus_project.run("run", "conf", "-n", "--format", "json", env={"A": "2"})
    [plan] = [json.loads(line) for line in as_json.stdout.splitlines() if line.startswith("{")]
    [found] = plan["files"]
    assert found["changed"] and "+a = 2" in found["diff"] and found["op"] == "template"
    same = nexus_project.run("run", "conf", "-n")
    assert "unchanged" in same.stdout and "+a" not in same.stdout


def test_validation_failure_keeps_the_old_file_and_shows_the_validator(nexus_project: NexusProject) -> None:
    root = nexus_project.root
    (root / "out").mkdir()
    (root / "out" / "rule").write_text("old\n")
    (root / "rule.j2").write_text("{{ text }}\n")
    nexusfile(
        nexus_project,
        """
import os
@task
def rule():
    template("rule.j2", "out/rule", vars={"text": os.environ.get("TEXT", "good")},
             validate="grep -q good {path} || { echo 'not good enough' >&2; exit 4; }")
""",
    )
    bad = nexus_project.run("run", "rule", env={"TEXT": "bad"})
    assert bad.code == 1, bad
    assert "validation" in bad.stderr and "not good enough" in bad.stderr
    assert (root / "out" / "rule").read_text() == "old\n"
    assert sorted(p.name for p in (root / "out").iterdir()) == ["rule"]
    assert nexus_project.run("run", "rule").code == 0
    assert (root / "out" / "rule").read_text() == "good\n"


def test_notify_names_are_recorded_on_every_operation(nexus_project: NexusProject) -> None:
    (nexus_project.root / "f").write_text("x")
    nexusfile(
        nexus_project,
        """
from nexus_core import handler

@handler
def restart_app():
    run("true")

@handler
def reload():
    run("true")

@task
def deploy():
    upload("f", "out/f", notify=restart_app)
    run("true", notify=["reload", restart_app])
""",
    )
    out = nexus_project.run("run", "deploy", "-n", "--format", "json")
    [plan] = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    ops = plan["plan"]["tasks"]["deploy"]["hosts"][0]["commands"]
    assert ops[0]["notify"] == ["restart_app"] and ops[1]["notify"] == ["reload", "restart_app"]
    assert ops[0]["op"] == "upload" and "op" not in ops[1]


def test_a_big_tree_with_empty_files_goes_in_several_scripts(nexus_project: NexusProject) -> None:
    """1,200 files with long names (scripts over one sh -c argument's 128 KiB go in chunks), some empty."""
    root = nexus_project.root
    long = "x" * 60
    for d in range(4):
        folder = root / "tree" / f"folder-{d}-{long}"
        folder.mkdir(parents=True)
        for f in range(300):
            (folder / f"file-{f}-{long}.txt").write_text("" if f % 50 == 0 else f"{d}/{f}\n")
    (root / "out").mkdir()
    nexusfile(
        nexus_project,
        """
@task
def copy():
    upload("tree", "out/tree", recursive=True, mode=0o640)
""",
    )
    first = nexus_project.run("run", "copy", "--format", "json", timeout=600)
    assert first.code == 0, first
    [stop] = first.of("transfer.stop")
    assert stop["files"] == 1200 and stop["changed_files"] == 1200
    copied = sorted((root / "out" / "tree").rglob("*.txt"))
    assert len(copied) == 1200 and all(p.stat().st_mode & 0o777 == 0o640 for p in copied)
    assert (root / "out" / "tree" / f"folder-2-{long}" / f"file-7-{long}.txt").read_text() == "2/7\n"
    assert (root / "out" / "tree" / f"folder-2-{long}" / f"file-50-{long}.txt").read_text() == ""
    assert not [p for p in (root / "out").rglob(".*")]
    again = nexus_project.run("run", "copy", "--format", "json", timeout=600)
    assert again.code == 0 and again.of("transfer.stop")[0]["unchanged_files"] == 1200, again


SECRET_KEY = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="  # 32 bytes, base64 (a test key)
SECRET_VALUE = "s3cr3t-9f2a77-unique"


def test_a_dry_run_diff_of_a_template_rendering_a_secret_shows_stars(nexus_project: NexusProject) -> None:
    """The dry run decrypts nothing: the secret stands for ***, the remote file's value is
    never printed, and a line differing only by the secret is not shown as a change."""
    root = nexus_project.root
    (root / "app.j2").write_text("user = app\npassword = {{ pw }}\nport = {{ port }}\n")
    nexusfile(
        nexus_project,
        """
import os
from nexus_core import secret
@task
def conf():
    template("app.j2", "out/app.conf", vars={"pw": secret("DB_PW"), "port": os.environ.get("PORT", "80")})
""",
    )
    key = {"NEXUS_MASTER_KEY": SECRET_KEY}
    assert nexus_project.run("secret", "set", "DB_PW", input=SECRET_VALUE, env=key).code == 0
    (root / "out").mkdir()
    done = nexus_project.run("run", "conf", env=key)
    assert done.code == 0, done
    target = root / "out" / "app.conf"
    assert SECRET_VALUE in target.read_text()
    before = (target.stat().st_mtime_ns, target.read_bytes())
    for fmt in ("text", "json"):
        dry = nexus_project.run("run", "conf", "-n", "--format", fmt, env={"PORT": "81"})
        assert dry.code == 0, dry
        out = dry.stdout + dry.stderr
        assert SECRET_VALUE not in out, out
        assert "+port = 81" in out and "-port = 80" in out, out
        assert "password = ***" in out and "-password" not in out and "+password" not in out, out
    assert (target.stat().st_mtime_ns, target.read_bytes()) == before
    # the same file but for the secret: unchanged (it said "would change" after every real run)
    same = nexus_project.run("run", "conf", "-n", "--format", "json")
    assert same.code == 0, same
    files = same.of("plan")[0]["files"]
    assert [(f["changed"], f["secrets_compared"]) for f in files] == [(False, False)], files
    text = nexus_project.run("run", "conf", "-n").stdout
    # not a bare "unchanged": an approver reading it was told nothing changes when a secret did
    assert "unchanged but for its secret values, which a dry run does not decrypt" in text, text
    assert "would change" not in text, text
    # a secret the file held under a name the template no longer writes: its key is shown, not its value
    target.write_text(f"user = app\nOLD_PASS={SECRET_VALUE}-old\npassword = x\nport = 80\n")
    dry = nexus_project.run("run", "conf", "-n")
    assert dry.code == 0 and SECRET_VALUE not in dry.stdout + dry.stderr, dry
    assert "-OLD_PASS=***" in dry.stdout, dry


def test_mask_secrets_hides_the_hosts_values_and_keeps_the_rest() -> None:
    from nexus_core.transfer import mask_secrets

    old = ["a = 1", "token: REAL1", "REAL2", "b = 2", "key=REAL3;x"]
    new = ["a = 1", "token: ***", "***", "b = 3", "key=***;x"]
    masked = mask_secrets(old, new)
    assert masked == ["a = 1", "token: ***", "***", "b = 2", "key=***;x"]
    # a renamed key: the old line is paired with the new secret line and masked
    assert mask_secrets(["pass = REAL"], ["password = ***"]) == ["***"]
    assert mask_secrets(["pass = REAL", "x"], ["pass: ***", "x"]) == ["***", "x"]
    # a line the new file drops keeps its key only; one without a key is masked whole
    assert mask_secrets(["a", "OLD_PASS=REAL", "b"], ["a", "b", "NEW=***"]) == ["a", "OLD_PASS=***", "b"]
    assert mask_secrets(["x", "REAL", "y: REAL"], ["***"]) == ["***", "***", "y: ***"]


def test_preserve_keeps_mode_and_mtime_of_files_and_trees(nexus_project: NexusProject) -> None:
    import os

    root = nexus_project.root
    (root / "tree" / "sub").mkdir(parents=True)
    one = root / "one.sh"
    one.write_text("echo hi\n")
    one.chmod(0o750)
    (root / "tree" / "a.txt").write_text("a\n")
    (root / "tree" / "sub" / "b.txt").write_text("b\n")
    (root / "big.bin").write_bytes(os.urandom(1 << 20) * 2)  # over the small-file series: the other path
    stamps = {
        one: 1_600_000_000,
        root / "tree" / "a.txt": 1_500_000_000,
        root / "tree" / "sub" / "b.txt": 1_400_000_007,
        root / "big.bin": 1_300_000_000,
    }
    for path, when in stamps.items():
        os.utime(path, (when, when))
    nexusfile(
        nexus_project,
        """
@task
def put():
    upload("one.sh", "out/")
    upload("tree", "out/tree", recursive=True)
    upload("big.bin", "out/")
    upload("one.sh", "out/fresh.sh", preserve=False)
    upload("one.sh", "out/wo.sh", preserve=False, mode=0o200)
""",
    )
    (root / "out").mkdir()
    done = nexus_project.run("run", "put")
    assert done.code == 0, done
    out = root / "out"
    assert int((out / "one.sh").stat().st_mtime) == 1_600_000_000
    assert (out / "one.sh").stat().st_mode & 0o777 == 0o750
    assert int((out / "tree" / "a.txt").stat().st_mtime) == 1_500_000_000
    assert int((out / "tree" / "sub" / "b.txt").stat().st_mtime) == 1_400_000_007
    assert int((out / "big.bin").stat().st_mtime) == 1_300_000_000
    assert int((out / "fresh.sh").stat().st_mtime) > 1_700_000_000  # preserve=False: when it was written
    assert (out / "wo.sh").stat().st_mode & 0o777 == 0o200  # a mode the owner cannot read: set after the checksum
    assert sorted(p.name for p in out.iterdir()) == ["big.bin", "fresh.sh", "one.sh", "tree", "wo.sh"]  # no temporary
    again = nexus_project.run("run", "put", "--format", "json")
    stops = [json.loads(line) for line in again.stdout.splitlines() if '"transfer.stop"' in line]
    assert stops and all(not e["changed"] for e in stops), again.stdout


def test_download_with_notify_is_refused_before_anything_runs(nexus_project: NexusProject) -> None:
    nexusfile(
        nexus_project,
        """
from nexus_core import handler

@handler
def restart():
    run("echo restart")

@task
def fetch():
    run("touch ran")
    download("/etc/hostname", "got/", notify=restart)
""",
    )
    line = next(i + 1 for i, text in enumerate(nexus_project.nexusfile.read_text().splitlines()) if "notify=" in text)
    out = nexus_project.run("run", "fetch")
    assert out.code == 2, out
    assert f"nexusfile.py:{line}:" in out.stderr and "download() cannot notify handlers" in out.stderr, out
    assert "drop notify= from download()" in out.stderr and "Traceback" not in out.stderr, out
    assert not (nexus_project.root / "ran").exists()


def test_local_checksums_are_kept_between_runs_and_any_change_is_seen(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import os
    import time

    from nexus_core import checksum_cache, transfer

    monkeypatch.setenv("NEXUS_CHECKSUM_CACHE", str(tmp_path / "sums.db"))
    monkeypatch.setattr(checksum_cache, "SETTLED_NS", 0)
    checksum_cache.forget()
    try:
        f = tmp_path / "a.txt"
        f.write_text("one\n")
        assert transfer.local_sha256(str(f)) == sha(f)
        assert checksum_cache.lookup(str(f), checksum_cache.signature(f.stat())) == sha(f)
        assert checksum_cache.lookup_tree(str(tmp_path)) == {str(f): (checksum_cache.signature(f.stat()), sha(f))}
        time.sleep(0.05)  # past the clock tick of the first write
        before = f.stat()
        f.write_text("two\n")  # same size, mtime put back: the change time still moves
        os.utime(f, ns=(before.st_atime_ns, before.st_mtime_ns))
        transfer._HASHES.clear()
        assert transfer.local_sha256(str(f)) == sha(f) == hashlib.sha256(b"two\n").hexdigest()
    finally:
        checksum_cache.forget()


def test_a_file_changed_within_the_last_seconds_is_hashed_but_not_kept(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from nexus_core import checksum_cache, transfer

    monkeypatch.setenv("NEXUS_CHECKSUM_CACHE", str(tmp_path / "sums.db"))
    checksum_cache.forget()
    try:
        f = tmp_path / "fresh.txt"
        f.write_text("new\n")
        assert transfer.local_sha256(str(f)) == sha(f)
        assert checksum_cache.lookup(str(f), checksum_cache.signature(f.stat())) == ""
    finally:
        checksum_cache.forget()


def test_the_checksum_cache_reads_and_writes_many_rows_at_once_and_keeps_all(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A tree's rows go in as one JSON array and come back as one joined row (each row of a
    plain ``executemany`` or ``fetchall`` hands the GIL over: docs/decisions.md, "The checksum
    cache read in one row"); odd paths, large integers and replaced rows survive, and an SQLite
    refusing the JSON functions still stores everything row by row."""
    import sqlite3

    from nexus_core import checksum_cache

    monkeypatch.setenv("NEXUS_CHECKSUM_CACHE", str(tmp_path / "sums.db"))
    checksum_cache.forget()
    try:
        odd = ["/t/a b", "/t/line\nbreak", "/t/quote'\"", "/t/ünï", "/t/tab\tx"]
        checksum_cache.remember([(p, (i, 2**62 + i, 3, 4, 5), f"sum{i}") for i, p in enumerate(odd)])
        assert checksum_cache.lookup_tree("/t") == {p: ((i, 2**62 + i, 3, 4, 5), f"sum{i}") for i, p in enumerate(odd)}
        assert checksum_cache.lookup(odd[1], (1, 2**62 + 1, 3, 4, 5)) == "sum1"
        checksum_cache.remember_remote("h", [(f"/r/{i}", f"{i} 1 2 3.4 5.6", f"s{i}") for i in range(1000)])
        checksum_cache.remember_remote("h", [("/r/7", "new", "s-new"), ("/elsewhere", "x", "y")])
        tree = checksum_cache.lookup_remote_tree("h", "/r")
        assert len(tree) == 1000 and tree["/r/7"] == ("new", "s-new") and tree["/r/8"] == ("8 1 2 3.4 5.6", "s8")
        assert checksum_cache.lookup_remote("h", {"/elsewhere", "/r/9", "/nope"}) == {
            "/elsewhere": ("x", "y"), "/r/9": ("9 1 2 3.4 5.6", "s9")}  # fmt: skip
        assert checksum_cache.lookup_remote_tree("other", "/r") == {} == checksum_cache.lookup_tree("/none")

        db = checksum_cache._connect()
        assert db is not None

        def no_json(action: int, _arg: object, function: object, *_: object) -> int:
            denied = action == sqlite3.SQLITE_FUNCTION and function == "json_extract"
            return sqlite3.SQLITE_DENY if denied else sqlite3.SQLITE_OK

        db.set_authorizer(no_json)
        checksum_cache.remember_remote("h2", [("/r/a", "sig a", "sa"), ("/r/b", "sig b", "sb")])
        db.set_authorizer(None)
        assert checksum_cache.lookup_remote_tree("h2", "/r") == {"/r/a": ("sig a", "sa"), "/r/b": ("sig b", "sb")}
    finally:
        checksum_cache.forget()


def test_a_missing_group_is_named_as_a_group_and_a_missing_owner_as_an_owner(
    nexus_project: NexusProject, tmp_path: Path
) -> None:
    (nexus_project.root / "f.txt").write_text("hi\n")
    nexusfile(
        nexus_project,
        f"""
@task
def g():
    upload("f.txt", "{tmp_path}/g.txt", sudo=True, owner="root", group="no_such_group_x")

@task
def o():
    upload("f.txt", "{tmp_path}/o.txt", sudo=True, owner="no_such_user_x")
""",
    )
    group = nexus_project.run("run", "g")
    assert group.code == 1 and "group 'no_such_group_x' does not exist on local" in group.stdout, group
    owner = nexus_project.run("run", "o")
    assert owner.code == 1 and "owner 'no_such_user_x' does not exist on local" in owner.stdout, owner
    assert not (tmp_path / "g.txt").exists() and not (tmp_path / "o.txt").exists()


def test_a_damaged_print_or_a_name_that_is_not_utf8_is_only_a_cache_miss(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The checksum cache is a cache: a print row with a bad count or listing is no print, and
    a file name that is not UTF-8 (its bytes kept as surrogates) is neither looked up nor kept
    (SQLite refuses it) instead of failing the upload; through the CLI the tree still goes."""
    import sqlite3

    from nexus_core import checksum_cache

    monkeypatch.setenv("NEXUS_CHECKSUM_CACHE", str(tmp_path / "sums.db"))
    checksum_cache.forget()
    try:
        checksum_cache.remember_tree_print("h", "/r", "op", ("src", "look", 2, ["/r/a", "/r"]))
        assert checksum_cache.lookup_tree_print("h", "/r", "op") == ("src", "look", 2, ["/r/a", "/r"])
        with sqlite3.connect(tmp_path / "sums.db") as db:
            db.execute("UPDATE trees SET files = 'many'")
        assert checksum_cache.lookup_tree_print("h", "/r", "op") is None
        with sqlite3.connect(tmp_path / "sums.db") as db:
            db.execute("UPDATE trees SET files = 2, listing = 'not zlib'")
        assert checksum_cache.lookup_tree_print("h", "/r", "op") is None
        bad = os.fsdecode(b"/t/bad\xff")
        assert checksum_cache.lookup(bad, (1, 2, 3, 4, 5)) == ""
        checksum_cache.remember([(bad, (1, 2, 3, 4, 5), "s"), ("/t/good", (1, 2, 3, 4, 5), "g")])
        checksum_cache.remember_remote("h", [(bad, "sig", "s"), ("/t/good", "sig", "g")])
        checksum_cache.remember_tree_print("h", bad, "op", ("src", "look", 1, [bad]))
        assert checksum_cache.lookup_tree("/t") == {"/t/good": ((1, 2, 3, 4, 5), "g")}
        assert checksum_cache.lookup_remote_tree("h", "/t") == {"/t/good": ("sig", "g")}
    finally:
        checksum_cache.forget()


def test_a_local_tree_with_a_name_that_is_not_utf8_is_uploaded(nexus_project: NexusProject, tmp_path: Path) -> None:
    site = nexus_project.root / "site"
    site.mkdir()
    (site / "ok.txt").write_text("ok\n")
    with open(os.path.join(os.fsencode(site), b"bad\xff"), "w") as f:
        f.write("x\n")
    dest = tmp_path / "out"
    nexusfile(nexus_project, f'@task\ndef up():\n    upload("site", "{dest}", recursive=True)\n')
    for _ in range(3):
        out = nexus_project.run("run", "up")
        assert out.code == 0, out
    assert (dest / "ok.txt").read_text() == "ok\n"
    assert open(os.path.join(os.fsencode(dest), b"bad\xff")).read() == "x\n"


def test_a_host_signature_counts_only_one_clock_tick_after_it_was_taken() -> None:
    from nexus_core.checksum_cache import remote_settled
    from nexus_core.transfer import parse_signatures, stat_script

    fine = "12 2049 5 1700000000.123456789 1700000000.123456789"
    assert remote_settled(fine, "1700000000.200000000")
    assert not remote_settled(fine, "1700000000.150000000")  # within 50 ms: a write could share the tick
    coarse = "12 2049 5 1700000000.000000000 1700000000.000000000"  # whole seconds: a coarse file system
    assert not remote_settled(coarse, "1700000001.500000000")
    assert remote_settled(coarse, "1700000002.000000000")
    assert not remote_settled(fine, "") and not remote_settled("junk", "1700000009.000000000")
    sigs, now = parse_signatures([
        "NXNOW 1700000001.000000000",
        "NXSIG 12 2049 5 1700000000.123456789 1700000000.123456789 /srv/a b.txt",
        "NXSIG 13 2049 5 1700000000 1700000000 /srv/old-stat",  # no nanoseconds: no signature
    ])  # fmt: skip
    assert sigs == {"/srv/a b.txt": fine} and now == "1700000001.000000000"
    assert parse_signatures(["NXNOW 1700000001.N"])[1] == ""  # a date without %N
    script = stat_script(["/srv/a"], [10], signatures=True)
    assert script.index("_nx_now\n") < script.index('_nx_stats "$@"') < script.index('_nx_sigs "$@"')
    assert "_nx_sigs" not in stat_script(["/srv/a"], [10])


def test_a_written_file_keeps_its_signature_by_its_time_or_by_a_second_hash() -> None:
    """After an upload, a file whose whole-second time was set before its checksum was
    verified keeps its signature while that time still stands (nanosecond file system); a
    time that moved (someone wrote it since), coarse timestamps or no such time need the
    host's second hash to match (nexus_core.transfer.signature_stands)."""
    from nexus_core.transfer import signature_stands

    now = "1700000100.000000000"
    set_then = "12 2049 5 1600000000.000000000 1700000000.123456789"
    assert signature_stands(set_then, now, "s", 1600000000, None)
    assert not signature_stands(set_then, now, "s", 1600000001, None)  # another time was set
    written_since = "12 2049 5 1700000000.120000000 1700000000.123456789"
    assert not signature_stands(written_since, now, "s", 1600000000, None)
    coarse = "12 2049 5 1600000000.000000000 1700000000.000000000"
    assert not signature_stands(coarse, now, "s", 1600000000, None)
    assert not signature_stands(set_then, "1700000000.150000000", "s", 1600000000, None)  # not settled
    assert signature_stands(written_since, now, "s", None, "s") and signature_stands(coarse, now, "s", None, "s")
    assert not signature_stands(set_then, now, "s", None, "other")
    assert not signature_stands(set_then, now, "s", None, None)
    assert signature_stands(written_since, now, "s", 1600000000, "s")  # hashed again: the hash decides
    assert not signature_stands("junk", now, "s", 1600000000, None)


def test_a_fifo_at_a_destination_or_source_is_refused_at_once_and_never_read(nexus_project: NexusProject) -> None:
    """Reading a FIFO blocks until a writer comes: the look neither hashes it nor replaces it,
    and says what it is (a dry run too) instead of waiting for the script's timeout."""
    import os
    import stat
    import time

    root = nexus_project.root
    (root / "out").mkdir()
    fifo = root / "out" / "fifo"
    os.mkfifo(fifo)
    (root / "f.txt").write_text("x\n")
    (root / "t.j2").write_text("a = {{ a }}\n")
    nexusfile(
        nexus_project,
        """
@task
def up():
    upload("f.txt", "out/fifo")

@task
def tpl():
    template("t.j2", "out/fifo", vars={"a": 1})

@task
def down():
    download("out/fifo", "got.txt")
""",
    )
    for name, said in (("up", f"destination {fifo} on local is a FIFO (not a regular file)"),
                       ("tpl", f"destination {fifo} on local is a FIFO (not a regular file)"),
                       ("down", "out/fifo on local is a FIFO (not a regular file)")):  # fmt: skip
        started = time.monotonic()
        out = nexus_project.run("run", name, timeout=30)
        assert out.code == 1, out
        assert time.monotonic() - started < 15, "refused at once, not after the look's timeout"
        assert said in out.stderr and "could not look" not in out.stderr, out
        assert "regular file" in out.stderr.split("Suggestions:")[-1], out  # the fix
        dry = nexus_project.run("run", name, "-n", timeout=30)
        assert said in dry.stdout, dry
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode), "left as it was"
    assert sorted(p.name for p in (root / "out").iterdir()) == ["fifo"] and not (root / "got.txt").exists()


def test_the_look_hashes_regular_files_only_and_names_what_else_is_there(tmp_path: Path) -> None:
    """The stat and checksum scripts never open a FIFO, a socket or a device (also behind a
    link); ``what_script`` says what such a path is with shell built-ins only."""
    import os
    import socket
    import subprocess

    from nexus_core import transfer

    plain = tmp_path / "plain.txt"
    plain.write_text("plain\n")
    fifo, sock, link, dangling = tmp_path / "fifo", tmp_path / "sock", tmp_path / "link", tmp_path / "dangling"
    os.mkfifo(fifo)
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(sock))
    link.symlink_to(fifo)
    dangling.symlink_to(tmp_path / "nothing")
    paths = [str(p) for p in (plain, fifo, sock, link, dangling)] + ["/dev/null"]

    def sh(script: str) -> list[str]:
        done = subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True, timeout=10, check=False)
        assert done.returncode == 0, done.stderr
        return done.stdout.splitlines()

    try:
        lines = sh(transfer.stat_script(paths, [-1] * len(paths)))
        assert [s.kind for s in transfer.parse_stat(paths, lines)] == ["file"] + ["other"] * 5
        assert transfer.parse_sums(lines) == {str(plain): sha(plain)}
        assert transfer.parse_sums(sh(transfer.sums_script([str(fifo), str(plain), "/dev/zero"]))) == {
            str(plain): sha(plain)}  # fmt: skip
        named = [line.split()[1] for line in sh(transfer.what_script(paths[1:])) if line.startswith("NXWHAT ")]
        assert named == ["fifo", "socket", "fifo", "link", "char"]
    finally:
        server.close()


def test_a_look_stops_on_the_runs_cancel_like_any_command(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A look that does not answer (a hung file system) is part of a running operation:
    STOP lets it go on, INTERRUPT and above reach its script at once (not a cancel of its own)."""
    import threading
    import time

    from nexus_core import checksum_cache, transfer
    from nexus_core.api import Cancel, CommandResult, Executor, ExecutorContext
    from nexus_core.model import Host, Transfer

    class Stuck(Executor):
        """Its scripts block until the cancel they were given reaches INTERRUPT (10 s at most)."""

        name = "stuck"
        started = threading.Event()

        def run(self, host, command, on_output, cancel, timeout):  # type: ignore[no-untyped-def]
            if cancel.requested:
                return CommandResult("interrupted", None, 0.0, "not started: the run is stopping")
            self.started.set()
            deadline = time.monotonic() + 10
            while cancel.level < Cancel.INTERRUPT and time.monotonic() < deadline:
                cancel.wait_change(cancel.level, 0.05)
            if cancel.level >= Cancel.INTERRUPT:
                return CommandResult("interrupted", None, 0.0, "interrupted (SIGINT)")
            return CommandResult("timeout", None, 10.0, "timed out after 10s")

    monkeypatch.setenv("NEXUS_CHECKSUM_CACHE", "off")
    checksum_cache.forget()
    source = tmp_path / "f.txt"
    source.write_text("x\n")
    executor = Stuck(ExecutorContext(config={}, root=str(tmp_path), emit=lambda _e: None, run_id="t"))
    op = Transfer(cmd="upload f.txt -> /srv/f.txt", kind="upload", src=str(source), dest="/srv/f.txt")
    events: list[object] = []
    reporter = transfer.Reporter(events.append, "t", "deploy", "web", 0)

    def upload(cancel: Cancel, got: list[CommandResult]) -> None:
        got.append(transfer.execute(executor, Host("web"), op, reporter, cancel, 60))

    for level in (Cancel.INTERRUPT, Cancel.KILL):  # the grace's end; a second SIGTERM
        cancel = Cancel()
        Stuck.started.clear()
        got: list[CommandResult] = []
        worker = threading.Thread(target=upload, args=(cancel, got))
        worker.start()
        assert Stuck.started.wait(5)
        cancel.raise_to(Cancel.STOP)
        worker.join(0.3)
        assert worker.is_alive(), "STOP lets the running operation go on"
        stopped = time.monotonic()
        cancel.raise_to(level)
        worker.join(5)
        assert not worker.is_alive() and time.monotonic() - stopped < 3
        [result] = got
        assert result.status == "interrupted" and "could not look at /srv/f.txt on web" in result.reason, result
    checksum_cache.forget()


def test_a_download_never_replaces_a_local_fifo_and_says_what_is_wrong_locally(nexus_project: NexusProject) -> None:
    import os
    import stat

    root = nexus_project.root
    (root / "src.txt").write_text("bytes\n")
    (root / "plain").write_text("a file, not a folder\n")
    os.mkfifo(root / "local-fifo")
    (root / "to-fifo").symlink_to(root / "local-fifo")
    nexusfile(
        nexus_project,
        """
@task
def into_fifo():
    download("src.txt", "local-fifo")

@task
def through_link():
    download("src.txt", "to-fifo")

@task
def under_a_file():
    download("src.txt", "plain/x.txt")

@task
def nowhere():
    download("src.txt", "/proc/nx-no/x.txt")
""",
    )
    fifo = root / "local-fifo"
    for name, said in (("into_fifo", f"local path {fifo} is a FIFO (not a regular file)"),
                       ("through_link", f"local path {root / 'to-fifo'} is a FIFO (not a regular file)"),
                       ("under_a_file", f"local path {root / 'plain' / 'x.txt'} cannot be created: "
                                        f"{root / 'plain'} is a file, not a folder"),
                       ("nowhere", "cannot create the local folder /proc/nx-no for /proc/nx-no/x.txt")):  # fmt: skip
        out = nexus_project.run("run", name)
        assert out.code == 1, out
        assert said in out.stderr and "executor 'local'" not in out.stderr, out
        assert "FileExistsError" not in out.stderr and "FileNotFoundError" not in out.stderr, out
        assert "Suggestions:" in out.stderr, out
    dry = nexus_project.run("run", "into_fifo", "-n")
    assert f"local path {fifo} is a FIFO" in dry.stdout, dry
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and (root / "to-fifo").is_symlink()
    assert (root / "plain").read_text() == "a file, not a folder\n"
    assert not [p for p in root.iterdir() if ".nexus-" in p.name], "nothing was transferred"


def test_template_vars_keys_must_be_names_and_mode_must_be_octal_bits(nexus_project: NexusProject) -> None:
    root = nexus_project.root
    (root / "app.conf.j2").write_text("a = {{ a }}\n")
    (root / "f.txt").write_text("x\n")
    (root / "out").mkdir()
    nexusfile(
        nexus_project,
        """
@task
def bad():
    template("app.conf.j2", "out/app.conf", vars={1: "a"})
    upload("f.txt", "out/a.txt", mode=644)
    template("app.conf.j2", "out/b.conf", vars={"a": 1}, mode=0o1644)
    upload("f.txt", "out/c.txt", mode=6755)
    upload("f.txt", "out/d.txt", mode=400)

@task
def good():
    upload("f.txt", "out/octal.txt", mode="0o640")
    upload("f.txt", "out/plain.txt", mode="644")
    upload("f.txt", "out/setuid.txt", mode=0o4750)
    upload("f.txt", "out/decimal.txt", mode=420)
""",
    )
    lines = nexus_project.nexusfile.read_text().splitlines()

    def line(text: str) -> int:
        return next(i + 1 for i, t in enumerate(lines) if text in t)

    out = nexus_project.run("run", "bad")
    assert out.code == 2, out
    text = out.stdout + out.stderr
    assert f"nexusfile.py:{line('vars={1:')}: template(): vars keys must be strings (names usable in the " \
           "template), not 1" in text, text  # fmt: skip
    assert "TypeError" not in text and ":0:" not in text, text
    assert f"nexusfile.py:{line('mode=644')}: upload(): mode=644 (0o1204) sets the sticky bit" in text, text
    assert "mode=644 is 0o1204; write mode=0o644 (octal) or mode='644'" in text, text
    assert f"nexusfile.py:{line('mode=0o1644')}: template(): mode=932 (0o1644) sets the sticky bit" in text, text
    assert "drop the sticky bit: write mode=0o644" in text, text
    assert "mode=6755 is 0o15143; write mode=0o6755 (octal) or mode='6755'" in text, text
    # Below 512 no sticky bit gives it away: refused where the decimal value lets others write.
    misread = "mode=400 is the decimal number 400, mode 0o620 (rw--w----), which lets the group write; "
    assert f"nexusfile.py:{line('mode=400')}: upload(): {misread}read as octal it would be 0o400" in text, text
    assert "write mode=0o400 (octal) or mode='400'; for 0o620 write mode=0o620" in text, text
    assert list((root / "out").iterdir()) == []
    done = nexus_project.run("run", "good")
    assert done.code == 0, done
    modes = {p.name: p.stat().st_mode & 0o7777 for p in (root / "out").iterdir()}
    assert modes == {"octal.txt": 0o640, "plain.txt": 0o644, "setuid.txt": 0o4750, "decimal.txt": 0o644}


def _line_of(project: NexusProject, text: str) -> int:
    return next(i + 1 for i, t in enumerate(project.nexusfile.read_text().splitlines()) if text in t)


def test_a_tree_with_links_fifos_and_empty_folders_follows_documented_rules(nexus_project: NexusProject) -> None:
    """A recursive upload sends regular files and folders (empty ones too) and follows a
    link to a file inside the tree; a FIFO, a link out of the tree, to a folder, to nothing
    or in a loop is named at the upload's line before anything runs, never silently dropped."""
    import os

    root = nexus_project.root
    tree = root / "ltree"
    (tree / "real").mkdir(parents=True)
    (tree / "real" / "file").write_text("inside\n")
    (tree / "empty" / "deeper").mkdir(parents=True)
    os.symlink("real/file", tree / "filelink")
    (root / "bad").mkdir()
    os.symlink("../ltree/real", root / "bad" / "dirlink")
    os.symlink("/etc/hostname", root / "bad" / "link_out")
    os.symlink("nowhere", root / "bad" / "dangling")
    os.symlink("loop", root / "bad" / "loop")
    os.mkfifo(root / "bad" / "pipe")
    (root / "bad" / "ok.txt").write_text("ok\n")
    nexusfile(
        nexus_project,
        """
@task
def good():
    upload("ltree", "out/", recursive=True)

@task
def bad():
    upload("bad", "out2/", recursive=True)
""",
    )
    out = nexus_project.run("run", "good", "--format", "json")
    assert out.code == 0, out
    got = root / "out" / "ltree"
    assert (got / "filelink").read_text() == "inside\n" and not (got / "filelink").is_symlink()
    assert (got / "real" / "file").read_text() == "inside\n"
    assert (got / "empty" / "deeper").is_dir(), "an empty folder is created on the host"
    assert "1 empty folder created" in out.of("command.stop")[0]["reason"], out
    again = nexus_project.run("run", "good", "--format", "json")
    assert again.code == 0 and not again.of("transfer.stop")[0]["changed"], again
    refused = nexus_project.run("run", "bad")
    assert refused.code == 2, refused
    text = refused.stdout + refused.stderr
    where = f"nexusfile.py:{_line_of(nexus_project, 'out2/')}"
    assert f"{where}: upload(): 1 entry of 'bad' is neither a regular file nor a folder and is never read: " \
           "pipe (a FIFO)" in text, text  # fmt: skip
    assert f"{where}: upload(): 1 symbolic link in 'bad' points outside the folder and is not followed: " \
           "link_out -> /etc/hostname" in text, text  # fmt: skip
    assert "1 symbolic link to a folder in 'bad' is not followed: dirlink -> ../ltree/real" in text, text
    assert "1 symbolic link in 'bad' points to nothing (dangling): dangling -> nowhere" in text, text
    assert "1 symbolic link in 'bad' is a loop: loop" in text, text
    assert "check their permissions" not in text, text
    assert not (root / "out2").exists()


def test_template_hints_quoted_mkdir_and_reserved_vars_names(nexus_project: NexusProject) -> None:
    """template() of a folder says to give a file (it has no recursive=); a missing folder's
    hint quotes the path for the shell; a vars key named as a built-in is refused."""
    root = nexus_project.root
    (root / "sub").mkdir()
    (root / "c.j2").write_text("{{ host }}\n")
    (root / "f.txt").write_text("x\n")
    nexusfile(
        nexus_project,
        """
@task
def folder():
    template("sub", "out/c")

@task
def taken():
    template("c.j2", "out/c", vars={"host": "myhost", "task": "x", "port": 1})

@task
def missing():
    upload("f.txt", "weird/missing dir/f.txt")
""",
    )
    out = nexus_project.run("run", "folder")
    assert out.code == 2, out
    assert "template(): source 'sub' is a folder" in out.stderr and "recursive=True)" not in out.stderr.replace(
        "upload('sub', ..., recursive=True)", ""
    ), out
    assert "give the path of one template file" in out.stderr, out
    out = nexus_project.run("run", "taken")
    assert out.code == 2, out
    assert f"nexusfile.py:{_line_of(nexus_project, 'myhost')}: template(): vars keys 'host', 'task' are names " \
           "Nexus sets in every template" in out.stderr, out  # fmt: skip
    assert "rename the key" in out.stderr and not (root / "out").exists(), out
    out = nexus_project.run("run", "missing")
    assert out.code == 1, out
    assert f"run(\"mkdir -p '{root}/weird/missing dir'\")" in out.stderr, out


def test_an_empty_path_is_reported_in_plain_words(nexus_project: NexusProject) -> None:
    """``upload(..., "")`` says which argument is wrong in a sentence (no "needs to as")."""
    (nexus_project.root / "f.txt").write_text("x\n")
    nexusfile(nexus_project, '\n@task\ndef up():\n    upload("f.txt", "")\n')
    out = nexus_project.run("run", "up")
    assert out.code == 2, out
    assert "upload(): to must be a non-empty path string, not ''" in out.stderr, out
    assert "needs to as" not in out.stderr, out


def test_names_as_long_as_the_file_system_takes_and_paths_full_of_quotes(nexus_project: NexusProject) -> None:
    """A temporary name beside a 250-byte name would pass the 255-byte limit: it is cut and
    given a digest of the name. Quotes grow twice when a script is quoted for the shell and
    then passed as one argument: 300 names of 240 quotes once made one script past Linux's
    128 KiB argument limit ("Argument list too long")."""
    root = nexus_project.root
    tree = root / "tree"
    tree.mkdir()
    for i in range(300):
        (tree / ("'" * 240 + f"{i:03d}")).write_text(f"{i}\n")
    long_a, long_b = "a" * 240 + "é" * 5, "a" * 240 + "é" * 4 + "e"  # 250 bytes, alike for 248
    (root / long_a).write_text("A\n")
    (root / long_b).write_text("B\n")
    (root / "out").mkdir()
    nexusfile(
        nexus_project,
        f"""
@task
def ship():
    upload("tree", "out/tree", recursive=True)
    upload({long_a!r}, "out/")
    upload({long_b!r}, "out/")
    download("out/" + {long_a!r}, "back/" + {long_a!r})
""",
    )
    for changed in (True, False):
        out = nexus_project.run("run", "ship", "--format", "json")
        assert out.code == 0, out
        assert [s["changed"] for s in out.of("transfer.stop")] == [changed] * 4
    assert {p.name: p.read_text() for p in (root / "out" / "tree").iterdir()} == {
        "'" * 240 + f"{i:03d}": f"{i}\n" for i in range(300)
    }
    assert (root / "out" / long_a).read_text() == "A\n" and (root / "out" / long_b).read_text() == "B\n"
    assert (root / "back" / long_a).read_text() == "A\n"
    assert not [p for p in root.rglob(".*") if "nexus-" in p.name], "no temporary file stays behind"


def test_a_temporary_name_stays_within_255_bytes_and_apart_for_every_name() -> None:
    from nexus_core.shell import temp_name

    tail = ".nexus-0123456789ab-0a1b2c3d.part"
    assert temp_name("app.conf", tail) == ".app.conf" + tail
    names = ["x" * n for n in range(200, 256)] + ["é" * 127, "é" * 126 + "e", "\udcff" * 250, "日本" * 42]
    made = [temp_name(n, tail) for n in names]
    assert all(len(m.encode("utf-8", "surrogateescape")) <= 255 for m in made)
    assert all(m.startswith(".") and m.endswith(tail) for m in made)
    assert len(set(made)) == len(made)


def test_a_template_on_the_local_machine_sees_its_user_and_has_no_port(nexus_project: NexusProject) -> None:
    import getpass

    root = nexus_project.root
    (root / "user.j2").write_text("user={{ host.user }}\n")
    (root / "port.j2").write_text("\nport={{ host.port }}\n")
    nexusfile(nexus_project, '@task\ndef who():\n    template("user.j2", "out/user.txt")\n')
    (root / "out").mkdir()
    assert nexus_project.run("run", "who").code == 0
    assert (root / "out" / "user.txt").read_text() == f"user={getpass.getuser()}\n"
    nexusfile(nexus_project, '@task\ndef port():\n    template("port.j2", "out/port.txt")\n')
    out = nexus_project.run("run", "port")
    assert out.code == 2, out
    assert "template port.j2:2: host.port: the local machine is not reached over a port" in out.stdout + out.stderr


def test_an_undefined_host_variable_in_a_template_is_named(nexus_project: NexusProject) -> None:
    """It said "'dict object' has no attribute 'role'" and advised vars={...}, which does not apply."""
    (nexus_project.root / "app.j2").write_text("role={{ host.vars.role }}\n")
    body = "template('app.j2', '/tmp/x/app')"
    nexus_project.write(f"from nexus_core import task, template\n\n@task\ndef t():\n    {body}\n")
    out = nexus_project.run("validate")
    assert out.code == 2, out
    assert "template app.j2:1: 'role' is not defined ('dict object' has no attribute 'role')" in out.stderr, out
    assert "the host's vars in host(...) or the inventory" in out.stderr and "| default(" in out.stderr


def test_a_shared_download_hint_fits_the_task(nexus_project: NexusProject) -> None:
    """In a sharded task every shard's hostname() is this machine's: the hint must name shard_id()."""
    nexus_project.write(
        "from nexus_core import download, task\n\n@task(parallel='sharded', shards=3)\ndef t():\n"
        "    download('/etc/hostname', 'dl/h.txt')\n"
    )
    out = nexus_project.run("validate")
    assert out.code == 2 and "download() writes" in out.stderr and "from 3 hosts (shard-0" in out.stderr, out
    assert 'f"logs/shard-{shard_id()}/app.log"' in out.stderr and "hostname()" not in out.stderr, out
