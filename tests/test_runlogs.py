"""Logs of past runs: `nexus logs` through the real CLI, and the pure parts of nexus_core.runlogs."""

from __future__ import annotations

import gzip
import os
import time
from pathlib import Path

from helpers import start_nexus

from nexus_core import runlogs
from nexus_core.testing import NexusProject

PIPELINE = """
from nexus_core import run, task

@task
def build():
    run("echo building; echo warn >&2", env={"API_TOKEN": "s3cr3tvalue"})
    run("echo token is s3cr3tvalue")

@task(deps=[build])
def test():
    run("echo testing; exit 3")
"""


def test_logs_per_task_and_host_redacted(nexus_project: NexusProject):
    nexus_project.write(PIPELINE)
    out = nexus_project.run("run", "test")
    assert out.code == 1, out
    assert "See every output line: nexus logs " in out.stderr and " test -H local" in out.stderr
    assert "Re-run with -v" not in out.stderr
    logs = nexus_project.run("logs")
    assert logs.code == 0, logs
    assert logs.stdout.splitlines() == [
        "== build on local ==", "$ echo building; echo warn >&2", "building", "warn", "[ok]",
        "$ echo token is ***", "token is ***", "[ok]",
        "== test on local ==", "$ echo testing; exit 3", "testing", "[failed: exit code 3]",
    ]  # fmt: skip
    assert "s3cr3tvalue" not in logs.stdout
    failed = nexus_project.run("logs", "--failed")
    assert failed.stdout.splitlines()[0] == "== test on local =="
    assert "build" not in failed.stdout
    assert nexus_project.run("logs", "build").stdout.splitlines()[0] == "== build on local =="
    verbose = nexus_project.run("run", "test", "-v")
    assert "nexus logs" not in verbose.stderr and "Re-run with -v" not in verbose.stderr


def test_logs_errors(nexus_project: NexusProject):
    nexus_project.write(PIPELINE)
    none = nexus_project.run("logs")
    assert none.code == 2 and "No runs recorded yet" in none.stderr
    nexus_project.run("run", "build")
    assert nexus_project.run("logs", "no-such-run").code == 2
    run_id = nexus_project.run("pipelines", "--format", "json").json()["runs"][0]["id"]
    typo = nexus_project.run("logs", run_id, "biuld")
    assert typo.code == 2 and "did you mean 'build'?" in typo.stderr
    nohost = nexus_project.run("logs", run_id, "-H", "web-*")
    assert nohost.code == 2 and "no host matches -H 'web-*'" in nohost.stderr, nohost
    assert "hosts with logs: local" in nohost.stderr and "this version" not in nohost.stderr, nohost
    nothing_failed = nexus_project.run("logs", run_id, "--failed")
    assert nothing_failed.code == 2 and "nothing failed in it" in nothing_failed.stderr, nothing_failed
    assert "Drop --failed" in nothing_failed.stderr


def test_follow_prints_a_running_run_until_it_ends(nexus_project: NexusProject):
    nexus_project.write(
        """
        from nexus_core import run, task

        @task
        def slow():
            run("echo first; sleep 1; echo second")
        """
    )
    proc = start_nexus(nexus_project, "run", "slow")
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            out = nexus_project.run("pipelines", "--format", "json")
            if out.code == 0 and out.json()["runs"]:
                break
            time.sleep(0.1)
        followed = nexus_project.run("logs", "--follow", timeout=60)
    finally:
        proc.wait(timeout=60)
    assert followed.code == 0, followed
    assert "[slow local] first" in followed.stdout and "[slow local] second" in followed.stdout


def test_size_cap_and_retention(tmp_path: Path):
    root = str(tmp_path / "logs")
    writer = runlogs.RunLogWriter(root, "r1", max_bytes=40, secrets=["hunter22"])

    class E:
        def __init__(self, name: str, **kw: object) -> None:
            self.name = name
            self.__dict__.update(kw)

    for i in range(10):
        writer(E("command.output", task="t", host="[::1]:22", line=f"line {i} hunter22"))
    writer.close()
    (found,) = runlogs.run_files(root, "r1")
    assert found.host == "[::1]:22"
    lines = runlogs.read_lines(found.path)
    assert lines[0] == "line 0 ***" and lines[-1].startswith("[... output cut at 40 bytes")
    assert len(lines) < 10
    old = tmp_path / "logs" / "r0"
    old.mkdir()
    os.utime(old, (time.time() - 30 * 86400,) * 2)
    assert runlogs.prune(root, 14) == ["r0"] and not old.exists()
    assert runlogs.prune(root, 0) == []


def test_a_stop_says_its_reason_once(tmp_path: Path):
    """The reason follows the status unless it only repeats it: ``[interrupted]``, not
    ``[interrupted: interrupted]``; ``[failed: exit code 3]`` and ``[timeout: ...]`` keep theirs."""
    from nexus_core.events import CommandStop

    root = str(tmp_path / "logs")
    writer = runlogs.RunLogWriter(root, "r1")
    for status, code, reason in (
        ("interrupted", None, "interrupted"),
        ("failed", 3, ""),
        ("timeout", None, "timed out after 2s"),
    ):
        stop = dict(run_id="r1", task="t", host="local", command="sleep 9", duration=1.0)
        writer(CommandStop(**stop, exit_code=code, status=status, reason=reason))
    writer.close()
    (found,) = runlogs.run_files(root, "r1")
    assert runlogs.read_lines(found.path) == ["[interrupted]", "[failed: exit code 3]", "[timeout: timed out after 2s]"]


def test_inflate_reads_growing_and_multi_member_files(tmp_path: Path):
    path = tmp_path / "x.gz"
    with gzip.GzipFile(path, "ab") as fh:
        fh.write(b"a\n")
    fh2 = gzip.GzipFile(path, "ab")
    fh2.write(b"b\npartial")
    fh2.flush()
    assert runlogs.inflate(path.read_bytes()) == "a\nb\npartial"
    assert runlogs.read_lines(str(path)) == ["a", "b"]
    fh2.close()


def test_each_batch_is_a_member_of_its_own_and_nothing_stays_open(tmp_path: Path):
    """A log written in many batches (a long command's output, flushed as it comes) keeps no
    zlib stream between them, and every batch reads back, past ten thousand of them."""
    log = runlogs._File(str(tmp_path / "logs" / "r1" / "t" / "h.log.gz"))
    batches = [f"line {i} {'x' * (i % 700)}\n".encode() for i in range(12_000)]
    for data in batches:
        log.write_out(data)
    fields = {"path", "written", "size", "pending", "pending_bytes", "truncated", "marks_cut", "io"}
    assert vars(log).keys() == fields  # no stream
    raw = Path(log.path).read_bytes()
    assert runlogs.inflate(raw) == b"".join(batches).decode()
    with gzip.open(log.path, "rb") as fh:  # an ordinary gzip reader sees one file too
        assert fh.read() == b"".join(batches)


def test_prune_goes_by_the_run_ids_time_and_still_removes_old_runs(tmp_path):
    # Run ids start with their local start time: a folder named within the retention period
    # is not looked at; one named before it goes when it was not modified since.
    root = tmp_path / "logs"
    now = time.time()
    old_id = time.strftime("%Y%m%d-%H%M%S", time.localtime(now - 30 * 86400)) + "-abc123"
    new_id = time.strftime("%Y%m%d-%H%M%S", time.localtime(now - 3600)) + "-def456"
    for name in (old_id, new_id, "not-a-run"):
        (root / name).mkdir(parents=True)
        os.utime(root / name, (now - 30 * 86400,) * 2)
    assert sorted(runlogs.prune(str(root), 14, now=now)) == sorted([old_id, "not-a-run"])
    assert (root / new_id).is_dir()


def test_logs_show_a_hosts_control_sequences_instead_of_obeying_them(nexus_project: NexusProject):
    """`nexus logs` (and `--follow`) print a host's kept output as `clean()` shows it: an OSC
    window title, a clear-screen CSI, an 8-bit CSI and a bidi override reach no terminal."""
    nexus_project.write(
        """
from nexus_core import run, task

@task
def noisy():
    run(r"printf '\\033]0;pwned\\007title\\n\\033[2Jclear\\n\\302\\233C1\\n\\342\\200\\256rtl\\n'")
"""
    )
    assert nexus_project.run("run", "noisy").code == 0
    logs = nexus_project.run("logs")
    assert logs.code == 0, logs
    for raw in ("\x1b", "\x07", "\x9b", "\u202e"):
        assert raw not in logs.stdout, (raw, logs.stdout)
    assert "^[]0;pwned^Gtitle" in logs.stdout and "^[[2Jclear" in logs.stdout
    assert "<U+009B>C1" in logs.stdout and "<U+202E>rtl" in logs.stdout


def test_a_run_id_prefix_of_several_runs_is_called_ambiguous_and_lists_them(nexus_project: NexusProject):
    nexus_project.write(PIPELINE)
    for _ in range(2):
        nexus_project.run("run", "build")
    ids = [line.split()[0] for line in nexus_project.run("pipelines").stdout.splitlines() if line[:4].isdigit()]
    assert len(ids) >= 2, ids
    for args in (("logs", "20"), ("resume", "20"), ("pipelines", "discard", "20")):
        out = nexus_project.run(*args)
        assert out.code == 2, out
        assert "Run id '20' is ambiguous" in out.stderr and ids[0] in out.stderr, out
    unknown = nexus_project.run("logs", "nope")  # a word that is no id: a task no run had
    assert unknown.code == 2, unknown
    assert "No run id starts with 'nope', and no recorded run has a task 'nope'" in unknown.stderr, unknown
    unknown = nexus_project.run("logs", "ab12")
    assert unknown.code == 2 and "No run 'ab12'" in unknown.stderr, unknown
    newest = nexus_project.run("logs")  # the newest run of any project: named on stderr
    assert newest.code == 0 and f"# run {ids[0]} of " in newest.stderr, newest


def test_a_log_written_fast_stays_in_order_and_holds_little_in_memory(tmp_path):
    """A host printing faster than the flusher's rounds writes its own batches (memory stays
    bounded per log); batches reach the file in order whichever thread writes them."""
    import threading

    writer = runlogs.RunLogWriter(str(tmp_path), "r1", max_bytes=50_000_000)
    done = threading.Event()
    most = [0]

    def flusher() -> None:
        while not done.is_set():
            writer.flush()

    thread = threading.Thread(target=flusher)
    thread.start()
    try:
        for i in range(60_000):
            writer._write("t", "h", f"line {i:06d} " + "x" * 40)
            f = writer._files[("t", "h")]
            most[0] = max(most[0], f.pending_bytes)
    finally:
        done.set()
        thread.join(30)
    writer.close()
    path = runlogs.host_file(str(tmp_path), "r1", "t", "h")
    lines = runlogs.read_lines(path)
    assert [int(line.split()[1]) for line in lines] == list(range(60_000))
    assert most[0] <= runlogs.PENDING_MAX + 100


def test_env_values_named_like_secrets_are_hidden_on_screen_too(nexus_project: NexusProject):
    """`nexus logs` hid run(env={"DB_PASSWORD": ...}); -v, --format json and the failure
    report printed the value."""
    nexus_project.write(
        """
from nexus_core import run, task

@task
def t():
    run("echo pw=$DB_PASSWORD; exit 3", env={"DB_PASSWORD": "s3cr3tval-77"})
"""
    )
    for args in (("-v",), ("--format", "json"), ()):
        out = nexus_project.run("run", "t", *args)
        assert out.code == 1, out
        assert "s3cr3tval-77" not in out.stdout + out.stderr, (args, out)
        assert "pw=***" in out.stdout + out.stderr, (args, out)


def test_logs_of_a_task_that_never_ran_say_so(nexus_project: NexusProject):
    nexus_project.write(
        'from nexus_core import run, task\n\n@task\ndef a():\n    run("false")\n\n@task(deps=[a])\ndef dep():\n'
        '    run("true")\n'
    )
    assert nexus_project.run("run", "dep").code == 1
    out = nexus_project.run("logs", "dep")
    assert out.code == 2, out
    assert "No logs to show for task 'dep' of run " in out.stderr and "it did not run (skipped)" in out.stderr, out
    assert "filters" not in out.stderr


def test_past_the_cap_the_log_keeps_each_command_and_how_it_ended(nexus_project):
    """The cap dropped everything after it: the failing command a report points to (`See every
    output line: nexus logs ...`) was not in the log, and `--failed` showed no failure."""
    nexus_project.write(
        "from nexus_core import config, run, task\n\nconfig(log_max_bytes=1000)\n\n"
        "@task\ndef t():\n"
        '    run("seq 1 1000")\n'
        '    run("echo second")\n'
        '    run("echo third; exit 5")\n'
        "    \n"
        "@task\ndef long():\n"
        "    run(\"yes x | head -n 3000 | tr -d '[:space:]'; echo; echo after\")\n"
    )
    assert nexus_project.run("run", "t").code == 1
    shown = nexus_project.run("logs", "t").stdout
    lines = [line.split("] ", 1)[-1] for line in shown.splitlines()]
    assert "$ echo second" in lines and "$ echo third; exit 5" in lines, shown
    assert "[failed: exit code 5]" in lines and "second" not in lines, shown  # the output stays cut
    assert any("output cut at 1000 bytes" in line for line in lines), shown
    assert nexus_project.run("run", "long").code == 0
    shown = nexus_project.run("logs", "long").stdout
    lines = [line.split("] ", 1)[-1] for line in shown.splitlines()]
    assert any(line.startswith("xxxxxxxx") for line in lines), shown  # the front of the long line
    assert "[ok]" in lines, shown
