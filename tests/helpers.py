"""Shared test helpers (bounded polling, processes, output); tests import them as `helpers`."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.05) -> bool:  # type: ignore[no-untyped-def]
    """Poll ``predicate`` until it is true or ``timeout`` seconds pass (bounded loop)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def pgrep(pattern: str) -> list[int]:
    """PIDs of processes whose full command line matches ``pattern`` (excluding zombies' parents)."""
    out = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True, check=False)
    return [int(p) for p in out.stdout.split() if int(p) != os.getpid()]


def run_in_pty(
    args: list[str],
    cwd,
    env: dict[str, str],
    answers: dict[bytes, bytes] | None = None,
    timeout: float = 60,
    size: tuple[int, int] | None = None,
    controlling: bool = False,
) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    """Run ``python -m nexus_core ARGS`` on a pseudo-terminal; answer prompts; return (code, screen).

    ``answers`` maps text that may appear on the screen to what to type (once each);
    ``size``: the terminal's (columns, rows). ``controlling``: the terminal becomes the
    process's controlling terminal (``getpass`` reads ``/dev/tty``).
    """
    import pty
    import select
    import sys

    pending = dict(answers or {})
    master, slave = pty.openpty()
    if size is not None:
        import fcntl
        import struct
        import termios

        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", size[1], size[0], 0, 0))

    def _take_terminal() -> None:  # in the child, between fork and exec
        import fcntl
        import termios

        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen([sys.executable, "-m", "nexus_core", *args], cwd=cwd, env=env,
                            stdin=slave, stdout=slave, stderr=slave, close_fds=True,
                            start_new_session=controlling,
                            preexec_fn=_take_terminal if controlling else None)  # fmt: skip
    os.close(slave)
    screen = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:
                break
            if not data:
                break
            screen += data
            for prompt in [p for p in pending if p in screen]:
                os.write(master, pending.pop(prompt))
        elif proc.poll() is not None:
            break
    os.close(master)
    try:
        return proc.wait(timeout=30), screen.decode("utf-8", "replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def start_nexus(project, *args: str, env: dict[str, str] | None = None, **kwargs) -> subprocess.Popen[str]:  # type: ignore[no-untyped-def]
    """Start ``python -m nexus_core ARGS`` in ``project`` (no colour, CI mode), pipes for its output."""
    full = {**os.environ, **project.env, "NO_COLOR": "1", "CI": "1", **(env or {})}
    streams = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, **kwargs}  # callers may redirect either
    return subprocess.Popen(
        [sys.executable, "-m", "nexus_core", *args], cwd=project.root, env=full, text=True, **streams
    )


@contextlib.contextmanager
def stopped(proc: subprocess.Popen[str], first: Callable[[], object] | None = None) -> Iterator[subprocess.Popen[str]]:
    """``proc``, killed and reaped on leaving the block if it still runs (a failing assertion
    included); ``first`` runs before that (e.g. lets a command the test holds back finish)."""
    try:
        yield proc
    finally:
        if first is not None:
            first()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def read_until(proc: subprocess.Popen[str], wanted: Callable[[str], bool], lines: int = 1000) -> str:
    """Read ``proc``'s stdout line by line until ``wanted(line)``, its end, or ``lines`` lines;
    return the last line read ("" at the end)."""
    assert proc.stdout is not None
    line = ""
    for _ in range(lines):
        line = proc.stdout.readline()
        if not line or wanted(line):
            break
    return line


class Out:
    """An executor's output callback that keeps every (stream, line), from any thread."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def __call__(self, stream: str, line: str) -> None:
        with self.lock:
            self.lines.append((stream, line))

    def of(self, stream: str) -> list[str]:
        """The lines of one stream, in order."""
        return [line for s, line in self.lines if s == stream]


#: Output faster than a -v follower shows it: the keeper cuts what was not read yet.
FAST = "for i in 0 1 2 3 4 5; do seq $((i*700000+1)) $((i*700000+700000)); sleep 0.6; done; echo the-last-line"


def check_fast_output(out: str) -> None:
    """What a follower that fell behind the keeper shows: never the hole it read as NUL bytes,
    and the numbers it did not show said as dropped."""
    assert "\x00" not in out and "^@" not in out, "a hole the keeper made was shown as output"
    assert "the-last-line" in out
    shown = [line.rpartition("> ")[2] for line in out.splitlines() if "> " in line]
    numbers = [int(x) for x in shown if x.isdigit()]
    if len(numbers) < 4_200_000:
        assert "bytes of output dropped (spool_max_bytes)" in out, out[-3000:]


def check_fast_run(project, task: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Run ``task`` (a :data:`FAST` command) with ``-v``, its output to a file (a pipe nobody
    reads would stall Nexus on its own stdout), and :func:`check_fast_output` what it showed."""
    with (tmp_path / "out").open("w+") as sink:
        proc = start_nexus(project, "run", task, "-v", stdout=sink)
        _, err = proc.communicate(timeout=120)
        sink.seek(0)
        out = sink.read()
    assert proc.returncode == 0, (out[-2000:], err[-2000:])
    check_fast_output(out)
