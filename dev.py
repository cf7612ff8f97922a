#!/usr/bin/env python3
"""Development set-up in two commands, needing only Python 3.11+ with pip and venv.

    python3 dev.py example   # install into .venv and run the example pipeline
    python3 dev.py test      # install everything (+ test tools, openssh-server) and run every check

Other commands: ``install`` (only install), ``bench`` (run the benchmarks), ``docs`` (build the docs).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.abspath(__file__))
VENV = os.environ.get("NEXUS_VENV") or os.path.join(ROOT, ".venv")
BIN = os.path.join(VENV, "bin")
PY = os.path.join(BIN, "python")


def sh(*cmd: str, **kwargs: object) -> None:
    """Run a command, echoing it; stop with its exit code when it fails."""
    print("+ " + " ".join(cmd), flush=True)
    code = subprocess.call(list(cmd), **kwargs)  # type: ignore[arg-type]
    if code != 0:
        sys.exit(code)


def plugin_dirs() -> list[str]:
    """Every plugin distribution folder (one pyproject.toml each); ``plugins/_*`` are not plugins."""
    found = glob.glob(os.path.join(ROOT, "plugins", "*", "pyproject.toml"))
    return sorted(os.path.dirname(p) for p in found if not os.path.basename(os.path.dirname(p)).startswith("_"))


def session_mode_tests() -> list[str]:
    """Test files with ``pytest.mark.session_mode``: each plugin's ``tests/``, and ``tests/ssh``.

    The rule for the mark: a test module whose subject is how a command runs over an SSH
    connection (starting, streaming, exit codes, timeouts and cancel, sudo, env and stdin,
    secrets, what a crash leaves on the host) behaves differently in a shell session and in
    an exec channel, so it is marked and runs in both modes. Tests of connecting (auth,
    config, pacing, host keys), of file transfer, of the CLI's planning and output, and of
    the bed run once: the command channel is not what they check. ``test_ssh_session.py``
    pins each mode with the config key itself (docs/contributing/testing.md).
    """
    found = []
    for folder in [os.path.join(d, "tests") for d in plugin_dirs()] + [os.path.join(ROOT, "tests", "ssh")]:
        for path in sorted(glob.glob(os.path.join(folder, "**", "test_*.py"), recursive=True)):
            with open(path, encoding="utf-8") as fh:
                if "pytest.mark.session_mode" in fh.read():
                    found.append(path)
    return found


def _has_test_extra(folder: str) -> bool:
    """True when the plugin's pyproject.toml declares a ``test`` optional dependency group."""
    import tomllib

    with open(os.path.join(folder, "pyproject.toml"), "rb") as fh:
        data = tomllib.load(fh)
    return "test" in (data.get("project", {}).get("optional-dependencies") or {})


def ensure_venv() -> None:
    """Create .venv when missing (falls back to `virtualenv` if the venv module lacks pip)."""
    if os.path.exists(PY):
        return
    if subprocess.call([sys.executable, "-m", "venv", VENV]) != 0:
        shutil.rmtree(VENV, ignore_errors=True)
        sh(sys.executable, "-m", "pip", "install", "--user", "virtualenv")
        sh(sys.executable, "-m", "virtualenv", VENV)


def install(extras: str = "test,docs,tui") -> None:
    """Install nexus-core and every plugin, editable, into .venv."""
    ensure_venv()
    sh(PY, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--upgrade", "pip")
    args = ["-e", f"{ROOT}[{extras}]" if extras else ROOT]
    for folder in plugin_dirs():  # a plugin's own test extra (moto for nexus-aws) comes with "test"
        args += ["-e", f"{folder}[test]" if "test" in extras.split(",") and _has_test_extra(folder) else folder]
    sh(PY, "-m", "pip", "install", "-q", "--disable-pip-version-check", *args)


def ensure_system_packages() -> None:
    """The SSH tests need Debian's openssh-server and sudo, the dashboard's smoke test tmux;
    install them when missing (root only)."""
    wanted = (("openssh-server", "/usr/sbin/sshd"), ("sudo", "/usr/bin/sudo"), ("tmux", "/usr/bin/tmux"))
    missing = [pkg for pkg, path in wanted if not os.path.exists(path)]
    if not missing:
        return
    if os.geteuid() != 0:
        print(f"note: {', '.join(missing)} missing and not root: the tests needing them will be skipped", flush=True)
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    sh("apt-get", "update", "-qq", env=env)
    sh("apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing, env=env)


def cmd_example() -> None:
    """Install and run the example pipeline (examples/pipeline)."""
    install(extras="")
    sh(os.path.join(BIN, "nexus"), "run", "release", "-c", os.path.join(ROOT, "examples", "pipeline"))


def cmd_test(pytest_args: list[str]) -> None:
    """Lint, format check, type check, then every test."""
    install()
    ensure_system_packages()
    sh(os.path.join(BIN, "ruff"), "check", ROOT, cwd=ROOT)
    sh(os.path.join(BIN, "ruff"), "format", "--check", ROOT, cwd=ROOT)
    sh(os.path.join(BIN, "mypy"), cwd=ROOT)
    for folder in plugin_dirs():  # each plugin with its own settings, typed against nexus_core
        sh(os.path.join(BIN, "mypy"), cwd=folder)
    sh(PY, "-m", "pytest", *(pytest_args or ["-q"]), cwd=ROOT)
    # nexus-ssh runs commands in a shell session per connection by default; the tests whose
    # behaviour depends on that (marked session_mode, see session_mode_tests) run once more
    # with one exec channel per command, the other mode users can choose.
    mode_tests = session_mode_tests()
    if mode_tests:
        env = {**os.environ, "NEXUS_SSH_SESSION_MODE": "exec"}
        selected = ["-m", "session_mode and not slow", *mode_tests]
        sh(PY, "-m", "pytest", *(pytest_args or ["-q"]), *selected, cwd=ROOT, env=env)


def main(argv: list[str]) -> None:
    """Dispatch ``python3 dev.py COMMAND``."""
    if sys.version_info < (3, 11):  # noqa: UP036 - dev.py must also run on an old python3 to say so
        sys.exit(f"Nexus needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    command, rest = (argv[0], argv[1:]) if argv else ("", [])
    if command == "example":
        cmd_example()
    elif command == "test":
        cmd_test(rest)
    elif command == "install":
        install()
    elif command == "bench":
        install()
        sh(PY, os.path.join(ROOT, "bench", "run.py"), *rest, cwd=ROOT)
    elif command == "docs":
        install()
        sh(os.path.join(BIN, "mkdocs"), "build", "--strict", cwd=ROOT)
    else:
        print(__doc__)
        sys.exit(2)


if __name__ == "__main__":
    main(sys.argv[1:])
