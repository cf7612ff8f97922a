"""The CLI imports a built-in command's module only when that command is looked up."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys

from nexus_core.cli.application import BUILTIN_COMMANDS, main


def test_the_table_names_every_builtin_command_and_its_module() -> None:
    for module in set(BUILTIN_COMMANDS.values()):
        importlib.import_module(module)
    registered = {name: cmd.callback.__module__ if cmd.callback else "" for name, cmd in main.commands.items()}
    assert set(registered) == set(BUILTIN_COMMANDS)
    for name, module in BUILTIN_COMMANDS.items():
        if name != "plugin":  # `plugin new` is built by nexus_core.plugin_template, added by cli.info
            assert registered[name] == module, name


def test_nexus_run_does_not_import_the_other_commands() -> None:
    code = (
        "import sys, click\n"
        "from nexus_core.cli import main\n"
        "assert main.get_command(click.Context(main), 'run') is not None\n"
        "print(' '.join(sorted(m for m in sys.modules if m.startswith('nexus_core.cli.'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = set(out.split())
    assert "nexus_core.cli.run" in loaded
    for other in ("secret", "tui", "exec", "artifacts", "hosts", "state"):
        assert f"nexus_core.cli.{other}" not in loaded, out


def test_help_still_lists_every_command() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "nexus_core", "--help"], capture_output=True, text=True, check=True, env=None
    ).stdout
    for name in BUILTIN_COMMANDS:
        assert f" {name} " in out, name


def test_subgroups_list_only_their_own_commands() -> None:
    """``nexus config``/``pipelines``/``secret`` are plain groups: nexus-ssh's ``hosts`` group
    (or a built-in command) never shows up among their subcommands."""
    for group in ("config", "pipelines", "secret"):
        out = subprocess.run(
            [sys.executable, "-m", "nexus_core", group, "--help"], capture_output=True, text=True, check=True
        ).stdout
        names = {line.split()[1] for line in out.split("Commands", 1)[1].splitlines() if line.startswith("│ ")}
        assert names and not names & {"hosts", "run", "validate"}, (group, out)


def _run_hello(tmp_path, body: str, before: str, after: str) -> str:
    """``nexus run hello`` (task body ``body``) in this interpreter with ``before`` run first;
    at exit ``after`` (an expression) is written to a file, whose text is returned."""
    (tmp_path / "nexusfile.py").write_text(f"from nexus_core import task, run\n\n@task\ndef hello():\n    {body}\n")
    listing = tmp_path / "out.txt"
    code = (
        f"import atexit, sys\n{before}"
        "from nexus_core.cli import entry\n"
        f"atexit.register(lambda: open({str(listing)!r}, 'w').write({after}))\n"
        "sys.argv = ['nexus', 'run', 'hello']\n"
        "entry()\n"
    )
    env = {**os.environ, **{f"XDG_{k}_HOME": str(tmp_path / k.lower()) for k in ("STATE", "DATA", "CACHE", "CONFIG")}}
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return listing.read_text()


def test_a_run_of_one_local_command_imports_only_what_it_uses(tmp_path) -> None:
    """``nexus run`` of a plain task loads no secret-backend contract, no ``call()``, no ``-H``
    parser, no file-transfer types, no ``nexus secret`` commands, no shell completion and no
    retries' module (start-up cost; see docs/decisions.md, "Start-up")."""
    loaded = set(_run_hello(tmp_path, "run('true')", "", "' '.join(sorted(sys.modules))").split())
    assert "nexus_core.engine" in loaded  # it did run
    unused = {
        "nexus_core.cli.secret",
        "nexus_core.cli.preflight",
        "nexus_core.calls",
        "nexus_core.limit",
        "nexus_core.contracts.secrets",
        "nexus_core.contracts.files",
        "nexus_core.secrets.errors",
        "click.shell_completion",
        "tenacity",  # no command with retries (with Dask installed it imports tornado: ~80 ms)
    }
    assert not unused & loaded, sorted(unused & loaded)


def test_a_run_with_retries_imports_tenacity_before_the_hosts_threads_start(tmp_path) -> None:
    """The retries' module is imported once, up front, when a command of the plan has retries."""
    spy = (
        "from nexus_core import engine\n"
        "seen = []\n"
        "prepare = engine.Engine._prepare_executors\n"
        "def spy(self):\n"
        "    prepare(self)\n"
        "    seen.append('tenacity' in sys.modules)\n"
        "engine.Engine._prepare_executors = spy\n"
    )
    assert _run_hello(tmp_path, "run('true', retries=2)", spy, "repr(seen)") == "[True]"
