"""The core's shell-command builder (nexus_core.shell), run by real shells as on a host."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
from helpers import wait_for
from hypothesis import given
from hypothesis import strategies as st

from nexus_core import markers, shell
from nexus_core.executors.lines import LineSplitter

SHELLS = [s for s in ("/bin/sh", "/bin/bash") if shutil.which(s)]


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return dict(os.environ)


def marker(index: int = 0) -> markers.Marker:
    return markers.Marker("20261201-120000-abcdef", markers.key("deploy", "web-1", index), "web-1")


def sh(text: str, env: dict[str, str], shell_path: str = "/bin/sh") -> subprocess.CompletedProcess[str]:
    return subprocess.run([shell_path, "-c", text], env=env, capture_output=True, text=True, check=False, timeout=30)


def replayed(stdout: str) -> tuple[list[str], list[str], int | None]:
    """(stdout lines, stderr lines, exit code) of a replayed spool."""
    out, err, code, seen = [], [], None, False
    for line in stdout.split("\n"):
        ended, rc = shell.parse_spool_end(line)
        if ended and not seen:
            seen, code = True, rc
            if out and out[-1] == "":
                out.pop()
            continue
        (err if seen else out).append(line)
    if err and err[-1] == "":
        err.pop()
    return out, err, code


def test_values_are_quoted_and_names_checked(env):
    text = shell.body('printf \'%s|%s|\' "$A" "$(pwd)"', env=[("A", "it's $HOME; `x`")], cwd="/")
    assert sh(text, env).stdout == "it's $HOME; `x`|/|"
    with pytest.raises(shell.CommandError):
        shell.body("true", env=[("BAD-NAME", "x")])
    with pytest.raises(shell.CommandError):
        shell.body("true", user="root; rm -rf /")
    assert sh(shell.body("true", cwd="/does/not/exist"), env).returncode == 1


def test_sudo_words():
    assert shell.sudo_words(False) == "sudo -n"
    assert shell.sudo_words(True, "deploy") == "sudo -S -p '' -u deploy"
    assert shell.body("id", sudo=True).startswith("exec sudo -n -- /bin/sh -c ")


@pytest.mark.parametrize("shell_path", SHELLS)
@pytest.mark.parametrize(
    ("script", "code", "out", "err"),
    [
        ("echo a; echo b >&2", 0, ["a"], ["b"]),
        ("printf 'no-newline'; exit 3", 3, ["no-newline"], []),
        ("echo x\nfalse\necho never", 1, ["x"], []),  # several lines: set -e
        ("exec sh -c 'echo inner; exit 5'", 5, ["inner"], []),
        ("trap 'echo own' EXIT; echo body; exit 6", 6, ["body", "own"], []),
        ("if true; then echo unfinished", 2, [], None),  # a syntax error still reaches the trap
        ("sleep 30.31 & echo started", 0, ["started"], []),  # a background job does not hold it
    ],
)
def test_spooled_output_is_replayed_with_the_exit_code(env, shell_path, script, code, out, err):
    m = marker()
    text = shell.wrap(shell.body(script), m, spool=True, replay=True)
    done = sh(text, env, shell_path)
    got_out, got_err, got_code = replayed(done.stdout)
    assert (got_out, got_code) == (out, code), done
    if err is not None:
        assert got_err == err
    folder = Path(markers.local_status_dir(m.run_id, m.host))
    assert (folder / f"{m.key}.out").exists() and (folder / f"{m.key}.err").exists()
    for pid in subprocess.run(["pgrep", "-f", "sleep 30.31"], capture_output=True, text=True).stdout.split():
        os.kill(int(pid), signal.SIGKILL)


def test_a_spooled_command_outlives_its_reader_and_its_output_is_kept(env):
    """The reader of the wrapper's stdout goes away; the command still runs to its end."""
    m = marker(1)
    text = shell.wrap(shell.body('echo one; sleep 1; echo two; echo end > "$NEXUS_T"'), m, spool=True)
    flag = Path(env["XDG_CACHE_HOME"]) / "end"
    proc = subprocess.Popen(
        ["/bin/sh", "-c", text], env={**env, "NEXUS_T": str(flag)}, stdout=subprocess.PIPE, start_new_session=True
    )
    assert proc.stdout is not None
    proc.stdout.close()  # like a killed nexus: nobody reads the pipe any more
    assert wait_for(flag.exists, timeout=20)
    proc.wait(timeout=20)
    probe = sh(markers.probe_script(m.run_id, m.key, m.host), env)
    assert markers.parse_probe(probe.stdout.splitlines()) == markers.ProbeResult("finished", 0)
    spool = sh(markers.spool_script(m.run_id, m.key, m.host), env)
    out, _, _ = replayed(spool.stdout)
    assert out == ["one", "two"]


def test_follow_script_streams_both_spools(env):
    m = marker(2)
    sh(shell.wrap(shell.body("echo o; echo e >&2"), m, spool=True), env)
    proc = subprocess.Popen(["/bin/sh", "-c", shell.follow_script(m)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)  # fmt: skip
    try:
        out, err = proc.communicate(timeout=1)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
    assert out.startswith("o\n") and err == "e\n"


def test_lines_are_split_in_linear_time_and_capped():
    split = LineSplitter(max_line=10)
    assert split.feed("ab") == [] and split.feed("c\r\nd") == ["abc"]
    assert split.feed("x" * 1_000_000) == []
    (line,) = split.feed("\n")
    assert line.startswith("d" + "x" * 9) and line.endswith("[... 999991 more characters not shown]")
    assert split.feed("tail") == [] and split.finish() == ["tail"] and split.finish() == []


def test_a_progress_bar_redrawn_past_the_cap_shows_its_last_frame():
    split = LineSplitter(max_line=1000)
    bar = "".join(f"\r{i:7d} [=====>    ]" for i in range(60_000))
    (line,) = split.feed(bar + "\n")
    frame = "  59999 [=====>    ]"
    assert line.endswith(f"\r{frame} [... {len(bar) - 1000 - len(frame)} more characters not shown]"), line[-80:]
    assert line.rpartition("\r")[2].startswith(frame)  # what a terminal (and Nexus's display) shows
    # a last frame longer than MAX_FRAME is not kept: the line is cut as any other
    (long,) = LineSplitter(max_line=10).feed("\r" + "y" * 10_000 + "\n")
    assert "\r" not in long.removeprefix("\r") and long.endswith("[... 9991 more characters not shown]")


@given(chunks=st.lists(st.text(alphabet="ab\r\n", max_size=30), max_size=12), cap=st.integers(1, 40))
def test_line_splitter_matches_a_plain_split(chunks: list[str], cap: int) -> None:
    """Whatever the chunking: the lines of the joined text, ``\r``-trimmed, each capped."""
    split = LineSplitter(max_line=cap)
    got = [line for chunk in chunks for line in split.feed(chunk)] + split.finish()
    text = "".join(chunks)
    pieces = text.split("\n")
    if pieces[-1] == "":
        pieces.pop()
    want = []
    for piece in pieces:
        if len(piece) > cap:
            dropped = piece[cap:].removesuffix("\r")
            frame = dropped[dropped.rfind("\r") + 1 :] if "\r" in dropped else ""
            shown = f"\r{frame}" if frame else ""
            more = len(piece) - cap - len(frame)
            want.append(piece[:cap].rstrip("\r") + shown + f" [... {more} more characters not shown]")
        else:
            want.append(piece.removesuffix("\r"))
    assert got == want


@pytest.mark.parametrize(
    "script",
    [
        "echo one-line",
        "printf 'no-newline'",
        "printf 'a\\\\b  c \\n\\n'",  # backslashes, inner spaces, a blank last line
        "i=0; while [ $i -lt 300 ]; do echo line-$i; i=$((i+1)); done",  # over the small size: cat
        "printf '%01100d\\n' 0",  # one line just over it
        "echo out; echo err >&2",
    ],
)
def test_small_and_large_spools_replay_the_same_bytes(env: dict[str, str], script: str) -> None:
    """The shell's own read (small spools) and cat (larger ones) give the same stream and file."""
    m = marker(7)
    done = subprocess.run(
        ["/bin/sh", "-c", shell.wrap(shell.body(script), m, spool=True)], env=env, capture_output=True, timeout=30
    )
    direct = subprocess.run(["/bin/sh", "-c", script], env=env, capture_output=True, timeout=30)
    sep = b"\n\x1eNEXUS-SPOOL 0\n"
    assert done.stdout == direct.stdout + sep + direct.stderr
    folder = Path(markers.local_status_dir(m.run_id, m.host))
    assert (folder / f"{m.key}.out").read_bytes() == direct.stdout + sep


def test_a_status_file_of_nexus_0_1_is_read_and_becomes_the_folder(env: dict[str, str]) -> None:
    """A run interrupted under 0.1 kept one status *file* where the folder now goes: resume reads it."""
    old, new = marker(0), marker(1)
    folder = Path(markers.local_status_dir(old.run_id, old.host))
    folder.parent.mkdir(parents=True)
    folder.write_text(f"{old.key} pid 1\n{old.key} rc 0\n")
    probe = sh(markers.probe_script(old.run_id, old.key, old.host), env)
    assert markers.parse_probe(probe.stdout.splitlines()) == markers.ProbeResult("finished", 0)
    done = sh(shell.wrap(shell.body("echo later"), new, spool=True), env)
    assert done.returncode == 0 and replayed(done.stdout)[0] == ["later"], done
    assert folder.is_dir() and (folder / "status").read_text().startswith(f"{old.key} pid 1\n{old.key} rc 0\n")
    for m, code in ((old, 0), (new, 0)):
        probe = sh(markers.probe_script(m.run_id, m.key, m.host), env)
        assert markers.parse_probe(probe.stdout.splitlines()) == markers.ProbeResult("finished", code)


@pytest.mark.parametrize("shell_path", SHELLS)
@pytest.mark.parametrize(
    "script",
    [
        "echo one-line",
        "true",  # nothing printed: only the end line
        "echo err >&2",  # stderr only: the rare paths, from the third argument
        "echo out; echo err >&2",
        "i=0; while [ $i -lt 300 ]; do echo line-$i; i=$((i+1)); done",  # over the small size: cat
        "printf 'no-newline'; exit 4",
    ],
)
def test_the_session_shells_replay_gives_the_bytes_of_the_whole_one(
    env: dict[str, str], shell_path: str, script: str
) -> None:
    """A session shell passes the replay's usual paths and the whole replay as arguments (the
    usual ones parsed per command, the rest only when needed): same stream, same spool file."""
    whole, parted = marker(8), marker(9)
    inline = shell.build(script, marker=whole, spool=True)
    built = shell.build(script, marker=parted, spool=True, keeper_arg=True)
    assert "NEXUS-SPOOL" in inline and "NEXUS-SPOOL" not in built  # the replay comes as arguments
    texts = (inline, shell.with_keeper_arg(built))
    got = [subprocess.run([shell_path, "-c", text], env=env, capture_output=True, timeout=30) for text in texts]
    assert got[0].returncode == got[1].returncode
    pg = b"\x1eNEXUS-PG "
    assert got[0].stdout == got[1].stdout
    assert [ln for ln in got[0].stderr.splitlines() if pg not in ln] == [
        ln for ln in got[1].stderr.splitlines() if pg not in ln
    ]
    folder = Path(markers.local_status_dir(whole.run_id, whole.host))
    for kind in ("out", "err"):
        assert (folder / f"{whole.key}.{kind}").read_bytes() == (folder / f"{parted.key}.{kind}").read_bytes()


def test_a_taken_spool_holds_only_the_new_commands_output(env: dict[str, str]) -> None:
    """The spools an earlier command printed more into are emptied before the next one writes
    (by a built-in of their own, then opened for appending): nothing of the old output is left."""
    first, second = marker(10), marker(11)
    sh(shell.wrap(shell.body("printf '%0600d\\n' 1 2 3; echo old-err >&2"), first, spool=True), env)
    gone = subprocess.run(["/bin/sh", "-c", "echo $$"], capture_output=True, text=True, check=True).stdout
    text = shell.wrap(shell.body("echo two; echo e2 >&2"), second, spool=True, reuse=(first.key, int(gone)))
    done = sh(text, env)
    out, err, code = replayed(done.stdout)
    assert (out, err, code) == (["two"], ["e2"], 0)
    folder = Path(markers.local_status_dir(first.run_id, first.host))
    assert (folder / f"{first.key}.out").read_bytes() == b"two\n\n\x1eNEXUS-SPOOL 0\n"
    assert (folder / f"{first.key}.err").read_bytes() == b"e2\n"
    assert f"{second.key} out {first.key}" in (folder / "status").read_text()
