"""The executor conformance suite: one set of tests every executor (transport) must pass.

Like fsspec's ``tests/abstract/``: an executor's test module subclasses
:class:`ExecutorConformance` and provides two fixtures, and pytest runs every case of the
suite against that executor::

    import pytest
    from nexus_core.testing.conformance import ExecutorConformance

    class TestMyExecutorConformance(ExecutorConformance):
        @pytest.fixture
        def make_executor(self, tmp_path):
            made = []
            def make():
                made.append(MyExecutor(ExecutorContext(config={}, root=str(tmp_path),
                                                       emit=lambda e: None, run_id="t")))
                return made[-1]
            yield make
            for ex in made:
                ex.close()

        @pytest.fixture
        def host(self):
            return Host("127.0.0.1", transport="mine")

``make_executor()`` must return a new executor with its own :class:`ExecutorContext` (and
so its own :class:`~nexus_core.api.Cancel`) at each call: the cancel cases raise the
context's cancel, as the engine does, which leaves that executor stopping for good.

Optional fixtures to override: ``sudo_works`` (False skips the ``sudo=``/``user=`` cases),
``other_user`` (a user ``user=`` switches to; default ``nobody``).

Cases follow :attr:`Executor.capabilities`: output streaming, each cancel level and file
transfer are tested when declared and skipped otherwise. The host needs a POSIX shell with
``sleep``, ``ps``, ``awk``, ``head`` and ``yes``. No case asserts a duration; each one that
waits is bounded by a command timeout.
"""

from __future__ import annotations

import os
import random
import shlex
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from nexus_core.api import Cancel, Capabilities, CommandResult, Executor
from nexus_core.model import Command, Host

__all__ = ["ExecutorConformance", "Lines", "MakeExecutor"]

#: Returns a new executor (its own context and cancel) at each call.
MakeExecutor = Callable[[], Executor]

#: Seconds a case that expects a stop waits at most (the command's timeout).
BOUND = 20.0
#: Lines of :meth:`ExecutorConformance.test_large_output_arrives_whole` (100 bytes each: 20 MB).
LARGE_LINES = 200_000


class Lines:
    """The ``on_output`` callback of a case: records ``(stream, line)`` and runs a trigger."""

    def __init__(self, trigger: Callable[[list[tuple[str, str]]], None] | None = None) -> None:
        self.seen: list[tuple[str, str]] = []
        self._trigger = trigger
        self._lock = threading.Lock()

    def __call__(self, stream: str, line: str) -> None:
        with self._lock:
            self.seen.append((stream, line))
            seen = list(self.seen) if self._trigger is not None else []
        if self._trigger is not None:  # only the few-line cases have one: the copy stays cheap
            self._trigger(seen)

    def of(self, stream: str) -> list[str]:
        """The lines of one stream, in order."""
        return [line for s, line in self.seen if s == stream]


def _token() -> str:
    """A duration for ``sleep`` no other process on the host uses: it names the process tree."""
    return f"{random.randint(3000, 3999)}.{random.randint(1000, 9999)}"


class ExecutorConformance:
    """Base class of an executor's conformance tests; subclass it as ``TestXxx`` (see the module)."""

    # --- fixtures a subclass provides ------------------------------------------------------

    @pytest.fixture
    def make_executor(self) -> MakeExecutor:
        """Override: a factory of new executors (see the module docstring)."""
        pytest.fail("the conformance class must define a make_executor fixture")

    @pytest.fixture
    def host(self) -> Host:
        """Override: the host the cases run on."""
        pytest.fail("the conformance class must define a host fixture")

    @pytest.fixture
    def sudo_works(self) -> bool:
        """Override with False when the host's user has no passwordless sudo."""
        return True

    @pytest.fixture
    def other_user(self) -> str:
        """A user of the host that ``user=`` switches to (through sudo)."""
        return "nobody"

    @pytest.fixture
    def executor(self, make_executor: MakeExecutor, host: Host) -> Executor:
        """One executor for the case."""
        return _named(make_executor(), host)

    # --- helpers ---------------------------------------------------------------------------

    @staticmethod
    def run(
        executor: Executor,
        host: Host,
        command: Command | str,
        timeout: float = BOUND,
        on_output: Lines | None = None,
    ) -> tuple[CommandResult, Lines]:
        """Run one command as the engine does (the context's cancel); return its result and lines."""
        cmd = Command(command, timeout=timeout) if isinstance(command, str) else command
        lines = on_output or Lines()
        result = executor.run(host, cmd, lines, executor.context.cancel, timeout)
        return result, lines

    @classmethod
    def processes(cls, make_executor: MakeExecutor, host: Host, token: str) -> list[str]:
        """Processes on ``host`` whose command line holds ``sleep TOKEN`` (checked by a new executor)."""
        checker = _named(make_executor(), host)
        pattern = "[s]leep " + token.replace(".", "[.]")  # the brackets keep ps's own shell out
        result, lines = cls.run(checker, host, f"ps -eo pid,args | grep -e {shlex.quote(pattern)} || true")
        assert result.ok, f"ps on the host failed: {result}"
        return lines.of("stdout")

    @classmethod
    def wait_for_sleep(cls, make_executor: MakeExecutor, host: Host, token: str) -> None:
        """Wait (a few seconds at most) until the ``sleep TOKEN`` process itself runs on ``host``."""
        checker = _named(make_executor(), host)
        pattern = "^sleep +sleep " + token.replace(".", "[.]")  # the comm column: not the shell
        for _ in range(40):  # bounded: about 8 s
            result, lines = cls.run(checker, host, f"ps -eo comm,args | grep -E {shlex.quote(pattern)} || true")
            if result.ok and lines.of("stdout"):
                return
            time.sleep(0.2)

    @classmethod
    def assert_gone(cls, make_executor: MakeExecutor, host: Host, token: str) -> None:
        """Fail unless no ``sleep TOKEN`` process is left (waits a few seconds for them to go)."""
        left: list[str] = []
        for _ in range(40):  # bounded: about 8 s
            left = cls.processes(make_executor, host, token)
            if not left:
                return
            time.sleep(0.2)
        pytest.fail(f"processes of the command outlived it: {left}")

    # --- capabilities ----------------------------------------------------------------------

    def test_capabilities_are_declared(self, executor: Executor) -> None:
        """The executor declares :class:`Capabilities` that make sense."""
        caps = executor.capabilities
        assert isinstance(caps, Capabilities)
        assert caps.commands_per_host is None or caps.commands_per_host >= 1
        assert caps.cancel_levels <= {Cancel.INTERRUPT, Cancel.TERMINATE, Cancel.KILL}

    # --- exit codes and streams ------------------------------------------------------------

    @pytest.mark.parametrize("code", [0, 1, 3, 42])
    def test_exit_code(self, executor: Executor, host: Host, code: int) -> None:
        """``exit N``: ok for 0, failed with the code otherwise."""
        result, _ = self.run(executor, host, f"echo before-exit; exit {code}")
        assert result.exit_code == code, result
        assert result.status == ("ok" if code == 0 else "failed"), result
        assert result.ok is (code == 0)

    def test_stdout_and_stderr_keep_their_stream(self, executor: Executor, host: Host) -> None:
        """Each line arrives once, tagged with the stream it was written to, in order per stream."""
        result, lines = self.run(executor, host, "echo out-1; echo err-1 >&2; echo out-2; echo err-2 >&2")
        assert result.ok, result
        assert lines.of("stdout") == ["out-1", "out-2"]
        assert lines.of("stderr") == ["err-1", "err-2"]

    def test_last_line_without_newline(self, executor: Executor, host: Host) -> None:
        """Output that does not end with a newline still arrives as a line."""
        result, lines = self.run(executor, host, "printf 'first\\nno-newline'")
        assert result.ok, result
        assert lines.of("stdout") == ["first", "no-newline"]

    def test_stdin_is_empty(self, executor: Executor, host: Host) -> None:
        """A command that reads stdin sees end of file at once (it never waits for input)."""
        result, lines = self.run(executor, host, "if read -r x; then echo got:$x; else echo eof; fi", timeout=10)
        assert result.ok, result
        assert lines.of("stdout") == ["eof"]

    def test_declared_stdin_delivers_the_input_whole(self, executor: Executor, host: Host, sudo_works: bool) -> None:
        """With ``capabilities.stdin``, ``Command.input`` reaches the command (with and without sudo), then EOF."""
        if not executor.capabilities.stdin:
            pytest.skip("the executor does not declare stdin")
        data = "line one\n  two with spaces  \nno newline at the end"
        script = "cat; echo; echo end"
        for sudo in (False, True) if sudo_works else (False,):
            command = Command(script, sudo=sudo, timeout=BOUND, input=data)
            result, lines = self.run(executor, host, command)
            assert result.ok, result
            assert lines.of("stdout") == [*data.split("\n"), "end"], (sudo, lines.of("stdout"))

    def test_output_streams_while_the_command_runs(
        self, make_executor: MakeExecutor, executor: Executor, host: Host
    ) -> None:
        """Lines of both streams reach ``on_output`` before the command ends.

        The command prints, then sleeps; once both lines arrived the case stops it. An
        executor that hands the output over only at the end never sees the stop in time.
        """
        caps = executor.capabilities
        if not caps.streams_output:
            pytest.skip("the executor declares no output streaming")
        if not caps.cancel_levels:
            pytest.skip("the executor declares no cancel level: nothing stops the command early")
        cancel = executor.context.cancel
        level = max(caps.cancel_levels)

        def stop_when_both(seen: list[tuple[str, str]]) -> None:
            if ("stdout", "early-out") in seen and ("stderr", "early-err") in seen:
                cancel.raise_to(level)

        token = _token()
        result, lines = self.run(
            executor,
            host,
            f"echo early-out; echo early-err >&2; sleep {token}; echo late",
            on_output=Lines(stop_when_both),
        )
        assert "late" not in lines.of("stdout")
        assert result.status == "interrupted", result
        self.assert_gone(make_executor, host, token)

    # --- timeouts and cancel levels --------------------------------------------------------

    def test_timeout_kills_the_whole_process_tree(
        self, make_executor: MakeExecutor, executor: Executor, host: Host
    ) -> None:
        """A command past its timeout is reported ``timeout`` and its children are gone."""
        token = _token()
        cmd = f"sh -c 'sleep {token} & sleep {token}; true'; echo not-reached"
        result, lines = self.run(executor, host, cmd, timeout=2)
        assert result.status == "timeout", result
        assert "not-reached" not in lines.of("stdout")
        self.assert_gone(make_executor, host, token)

    def test_cancel_stop_lets_the_running_command_finish(self, executor: Executor, host: Host) -> None:
        """Cancel level STOP (start nothing new) does not touch a running command."""
        cancel = executor.context.cancel

        def stop(seen: list[tuple[str, str]]) -> None:
            if ("stdout", "started") in seen:
                cancel.raise_to(Cancel.STOP)

        result, lines = self.run(executor, host, "echo started; sleep 1; echo finished", on_output=Lines(stop))
        assert result.ok, result
        assert lines.of("stdout") == ["started", "finished"]

    @pytest.mark.parametrize(
        "level", [Cancel.INTERRUPT, Cancel.TERMINATE, Cancel.KILL], ids=["INTERRUPT", "TERMINATE", "KILL"]
    )
    def test_cancel_level_stops_the_command_and_its_children(
        self, make_executor: MakeExecutor, executor: Executor, host: Host, level: int
    ) -> None:
        """Cancel levels INTERRUPT, TERMINATE and KILL stop a running command and every child."""
        if level not in executor.capabilities.cancel_levels:
            pytest.skip(f"the executor does not declare cancel level {level}")
        cancel = executor.context.cancel
        token = _token()

        def stop(seen: list[tuple[str, str]]) -> None:
            # Signal once ``sleep`` runs: a shell that catches SIGINT (dash does, while it
            # waits) loses a SIGINT that lands between its fork and the child's exec.
            if seen[-1] == ("stdout", "started"):
                self.wait_for_sleep(make_executor, host, token)
                cancel.raise_to(level)

        cmd = f"echo started; sh -c 'sleep {token}; true'; echo not-reached"
        result, lines = self.run(executor, host, cmd, on_output=Lines(stop))
        assert result.status == "interrupted", result
        assert "not-reached" not in lines.of("stdout")
        self.assert_gone(make_executor, host, token)

    # --- sudo, env, cwd --------------------------------------------------------------------

    def test_sudo_runs_as_root(self, executor: Executor, host: Host, sudo_works: bool) -> None:
        """``sudo=True`` runs the command as root."""
        if not sudo_works:
            pytest.skip("no passwordless sudo on this host")
        result, lines = self.run(executor, host, Command("id -u", sudo=True, timeout=BOUND))
        assert result.ok, result
        assert lines.of("stdout") == ["0"]

    def test_user_runs_as_that_user(self, executor: Executor, host: Host, sudo_works: bool, other_user: str) -> None:
        """``user=NAME`` runs the command as that user."""
        if not sudo_works:
            pytest.skip("no passwordless sudo on this host")
        result, lines = self.run(executor, host, Command("id -un", user=other_user, timeout=BOUND))
        assert result.ok, result
        assert lines.of("stdout") == [other_user]

    ODD_VALUE = "two words 'single' \"double\" $HOME `x` \\ ; & | *"

    def test_env_values_arrive_verbatim(self, executor: Executor, host: Host) -> None:
        """``env=`` values reach the command unchanged, quotes and shell characters included."""
        env = (("NEXUS_CONF_A", self.ODD_VALUE), ("NEXUS_CONF_B", ""))
        cmd = Command('printf "%s|%s\\n" "$NEXUS_CONF_A" "${NEXUS_CONF_B-unset}"', env=env, timeout=BOUND)
        result, lines = self.run(executor, host, cmd)
        assert result.ok, result
        assert lines.of("stdout") == [f"{self.ODD_VALUE}|"]

    def test_env_survives_sudo(self, executor: Executor, host: Host, sudo_works: bool) -> None:
        """``env=`` with ``sudo=True``: sudo's reset of the environment does not drop the values."""
        if not sudo_works:
            pytest.skip("no passwordless sudo on this host")
        cmd = Command('printf "%s\\n" "$NEXUS_CONF_A"; id -u', env=(("NEXUS_CONF_A", self.ODD_VALUE),), sudo=True)
        result, lines = self.run(executor, host, cmd)
        assert result.ok, result
        assert lines.of("stdout") == [self.ODD_VALUE, "0"]

    def test_cwd(self, executor: Executor, host: Host, sudo_works: bool) -> None:
        """``cwd=`` runs the command in that folder (a name with a space), with and without sudo."""
        folder = f"/tmp/nexus conformance {_token()}"
        made, _ = self.run(executor, host, f"mkdir -p {shlex.quote(folder)}")
        assert made.ok, made
        try:
            result, lines = self.run(executor, host, Command("pwd", cwd=folder, timeout=BOUND))
            assert result.ok, result
            assert lines.of("stdout") == [folder]
            if sudo_works:
                result, lines = self.run(executor, host, Command("pwd; id -u", cwd=folder, sudo=True, timeout=BOUND))
                assert result.ok, result
                assert lines.of("stdout") == [folder, "0"]
        finally:
            self.run(executor, host, f"rm -rf {shlex.quote(folder)}")

    def test_missing_cwd_fails_without_running(self, executor: Executor, host: Host) -> None:
        """A ``cwd=`` that does not exist fails the command, which does not run elsewhere."""
        cmd = Command("echo ran-anyway", cwd=f"/nonexistent/nexus-{_token()}", timeout=BOUND)
        result, lines = self.run(executor, host, cmd)
        assert not result.ok, result
        assert "ran-anyway" not in lines.of("stdout")

    # --- output that is large, binary, or split --------------------------------------------

    def test_large_output_arrives_whole(self, executor: Executor, host: Host) -> None:
        """20 MB of output (200,000 lines) arrive complete and in order."""
        line = "x" * 99
        cmd = f"yes {line} | head -n {LARGE_LINES}; echo end"
        result, lines = self.run(executor, host, cmd, timeout=120)
        assert result.ok, result
        out = lines.of("stdout")
        assert len(out) == LARGE_LINES + 1
        assert out[-1] == "end"
        assert all(x == line for x in out[:-1])

    def test_binary_output_does_not_break_the_stream(self, executor: Executor, host: Host) -> None:
        """Bytes that are not UTF-8 (and NUL) arrive as replacement characters; later lines are intact."""
        result, lines = self.run(executor, host, "printf 'bin\\000ary\\377\\376end\\n'; echo after")
        assert result.ok, result
        out = lines.of("stdout")
        assert len(out) == 2, out
        assert out[0].startswith("bin") and "ary" in out[0] and out[0].endswith("end")
        assert "\ufffd" in out[0]
        assert out[1] == "after"

    def test_utf8_split_across_writes(self, executor: Executor, host: Host) -> None:
        """A character whose bytes arrive in two writes is decoded whole."""
        result, lines = self.run(executor, host, "printf 'caf\\303'; sleep 0.3; printf '\\251\\n'")
        assert result.ok, result
        assert lines.of("stdout") == ["café"]

    def test_utf8_across_read_chunks(self, executor: Executor, host: Host) -> None:
        """A long line of two-byte characters, one byte out of step, survives every read boundary."""
        count = 100_000
        cmd = f'awk \'BEGIN {{ printf "a"; for (i = 0; i < {count}; i++) printf "\\303\\251"; print "" }}\''
        result, lines = self.run(executor, host, cmd)
        assert result.ok, result
        assert lines.of("stdout") == ["a" + "é" * count]

    # --- concurrency and files -------------------------------------------------------------

    def test_commands_at_once_on_one_host(self, executor: Executor, host: Host) -> None:
        """Several threads share the executor (as the engine does), up to the declared limit per host."""
        limit = executor.capabilities.commands_per_host
        n = 4 if limit is None else min(4, limit)
        results: dict[int, tuple[CommandResult, Lines]] = {}

        def one(i: int) -> None:
            results[i] = self.run(executor, host, f"echo start-{i}; sleep 0.2; echo end-{i}")

        threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(BOUND * 2)
        assert sorted(results) == list(range(n))
        for i, (result, lines) in results.items():
            assert result.ok, result
            assert lines.of("stdout") == [f"start-{i}", f"end-{i}"]

    # --- files (nexus_core.transfer on the executor's primitives) --------------------------

    @pytest.fixture
    def remote_folder(self, executor: Executor, host: Host) -> Iterator[str]:
        """A fresh folder on the host that the login user may write in (removed after)."""
        if not executor.capabilities.file_transfer:
            pytest.skip("the executor declares no file transfer")
        folder = f"/tmp/nexus-conformance-{_token()}"
        made, _ = self.run(executor, host, f"mkdir -p {folder} && chmod 777 {folder}")
        assert made.ok, made
        yield folder
        self.run(executor, host, f"rm -rf {folder}")

    def test_a_file_is_written_verified_and_then_left_unchanged(
        self, executor: Executor, host: Host, tmp_path: Path, remote_folder: str
    ) -> None:
        """``write_files`` puts the bytes in place (no temporary file left); ``stat_files``
        then finds the same sha256, which is what makes a second transfer unnecessary."""
        from nexus_core import transfer

        source = tmp_path / "data.bin"
        source.write_bytes(os.urandom(100_000))
        dest = f"{remote_folder}/data.bin"
        result = transfer.put(executor, host, str(source), dest, mode=0o640)
        assert result.ok and result.changed and result.sent == 100_000, result
        [state] = transfer.stat_files(executor, host, [dest], [100_000])
        assert state.kind == "file" and state.sha256 == transfer.local_sha256(str(source)) and state.mode == 0o640
        listing, lines = self.run(executor, host, f"ls -A {remote_folder}")
        assert listing.ok and lines.of("stdout") == ["data.bin"], "no temporary file stays behind"
        back = tmp_path / "back.bin"
        fetched = transfer.fetch(executor, host, dest, str(back))
        assert fetched.ok and back.read_bytes() == source.read_bytes()
        again = transfer.fetch(executor, host, dest, str(back))
        assert again.ok and not again.changed

    def test_a_series_of_small_files_keeps_content_mode_and_time(
        self, executor: Executor, host: Host, tmp_path: Path, remote_folder: str
    ) -> None:
        """A tree's many small files (``send_files``, then ``rename_files`` or the finish
        script) arrive whole, with their mode and modification time, over older files,
        and leave no temporary file."""
        from nexus_core import transfer

        writes = []
        for i in range(80):
            source = tmp_path / f"f{i}"
            source.write_bytes(os.urandom(i * 997))
            mode = 0o600 if i % 3 else 0o755
            writes.append(transfer.file_write(str(source), f"{remote_folder}/f{i}", mode=mode,
                                              mtime=1_500_000_000 + i))  # fmt: skip
        made, _ = self.run(executor, host, f"echo old > {remote_folder}/f1 && echo old > {remote_folder}/f2")
        assert made.ok
        results = transfer.write_files(executor, host, writes)
        assert all(r.ok and r.changed for r in results), [r for r in results if not r.ok]
        states = transfer.stat_files(executor, host, [w.dest for w in writes], [w.size for w in writes])
        assert [(s.sha256, s.mode) for s in states] == [(w.sha256, w.mode) for w in writes]
        names = " ".join(w.dest for w in writes)
        times, lines = self.run(executor, host, f"stat -c %Y {names} 2>/dev/null || stat -f %m {names}")
        assert times.ok and lines.of("stdout") == [str(1_500_000_000 + i) for i in range(80)]
        listing, lines = self.run(executor, host, f"ls -A {remote_folder} | wc -l")
        assert listing.ok and lines.of("stdout") == ["80"], "no temporary file stays behind"

    def test_a_partial_transfer_resumes_from_its_end(
        self, executor: Executor, host: Host, tmp_path: Path, remote_folder: str
    ) -> None:
        """The temporary file an interrupted transfer left is extended, not sent again."""
        from nexus_core import transfer

        data = os.urandom(3 << 20)
        source = tmp_path / "big.bin"
        source.write_bytes(data)
        write = transfer.file_write(str(source), f"{remote_folder}/big.bin")
        half = tmp_path / "half.bin"
        half.write_bytes(data[: 1 << 20])
        with executor.file_session(host):  # where an interrupted transfer to this host left it
            executor.send_file(host, str(half), transfer.staging_path(replace(write, tag=transfer.host_tag(host))))
        [result] = transfer.write_files(executor, host, [write])
        assert result.ok and result.resumed_from == 1 << 20 and result.sent == 2 << 20, result
        [state] = transfer.stat_files(executor, host, [write.dest], [write.size])
        assert state.sha256 == write.sha256

    def test_a_write_that_fails_validation_leaves_the_old_file(
        self, executor: Executor, host: Host, tmp_path: Path, remote_folder: str
    ) -> None:
        """``validate`` runs on the temporary file; a failure keeps the destination as it was."""
        from nexus_core import transfer

        dest = f"{remote_folder}/conf"
        made, _ = self.run(executor, host, f"echo old > {dest}")
        assert made.ok
        source = tmp_path / "conf"
        source.write_text("new\n")
        result = transfer.put(executor, host, str(source), dest, validate="grep -q old {path}")
        assert not result.ok and "validation" in result.reason, result
        cat, lines = self.run(executor, host, f"cat {dest}; ls -A {remote_folder}")
        assert cat.ok and lines.of("stdout") == ["old", "conf"]

    def test_file_transfer_round_trip(self, executor: Executor, host: Host, tmp_path: Path) -> None:
        """``put`` then ``get`` copies bytes unchanged (when the executor declares file transfer)."""
        if not executor.capabilities.file_transfer:
            pytest.skip("the executor declares no file transfer")
        data = bytes(range(256)) * 64 + os.urandom(1024)
        source = tmp_path / "source.bin"
        source.write_bytes(data)
        folder = f"/tmp/nexus-conformance-{_token()}"
        made, _ = self.run(executor, host, f"mkdir -p {folder} && chmod 777 {folder}")
        assert made.ok, made
        try:
            executor.put(host, str(source), f"{folder}/copy.bin")
            result, lines = self.run(executor, host, f"wc -c < {folder}/copy.bin")
            assert result.ok, result
            assert lines.of("stdout") == [str(len(data))]
            back = tmp_path / "back.bin"
            executor.get(host, f"{folder}/copy.bin", str(back))
            assert back.read_bytes() == data
        finally:
            self.run(executor, host, f"rm -rf {folder}")

    # --- call(fn): a Fabric-style connection ----------------------------------------------------

    def test_connection_runs_commands_and_streams_their_output(self, executor: Executor, host: Host) -> None:
        """With ``capabilities.connection``: ``c.run`` works and its output reaches the streams;
        without it, :meth:`Executor.connection` declines with a message naming the transport."""
        from nexus_core.calls import CallStreams

        got: list[tuple[str, str]] = []
        out = _Writer("stdout", got)
        err = _Writer("stderr", got)
        streams = CallStreams(out, err, Cancel(), BOUND)
        if not executor.capabilities.connection:
            with pytest.raises(NotImplementedError, match=repr(executor.name)):
                executor.connection(host, streams)
            return
        with executor.connection(host, streams) as c:
            result = c.run("echo to-out; echo to-err >&2")
            assert result.ok and result.stdout.strip() == "to-out"
            failed = c.run("exit 3", warn=True)
            assert failed.exited == 3
        assert ("stdout", "to-out") in got and ("stderr", "to-err") in got


def _named(executor: Executor, host: Host) -> Executor:
    """``executor``, its class named after ``host``'s transport when it has no name yet.

    Nexus names an executor class from its registration when it loads the plugin; a test that
    builds the executor itself gets the same name here (the host's transport is the name the
    executor serves).
    """
    if not getattr(type(executor), "name", None):
        type(executor).name = host.transport
    return executor


class _Writer:
    """A text stream that records complete lines with their stream name."""

    def __init__(self, stream: str, into: list[tuple[str, str]]) -> None:
        self.stream, self.into, self.buf = stream, into, ""

    def write(self, data: str) -> int:
        self.buf += data
        while "\n" in self.buf:
            line, self.buf = self.buf.split("\n", 1)
            self.into.append((self.stream, line))
        return len(data)

    def flush(self) -> None:
        pass
