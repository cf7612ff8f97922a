"""A run over more hosts than the open-files limit allows, on a real sshd bed: every host
that could not open a file says so with the fix, once per kind of failure (grouped), and
nothing blames a key or a plugin."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from nexus_core.testing.sshbed import USER_KEY, SshBed

pytestmark = pytest.mark.ssh


def test_running_out_of_open_files_is_named_with_its_fix(tmp_path: Path) -> None:
    with SshBed(40, port=0, bastion=False) as bed:
        hosts = ", ".join(repr(h.address) for h in bed.hosts)
        (tmp_path / "nexusfile.py").write_text(
            textwrap.dedent(f"""
            from nexus_core import config, hosts, run, task
            config(ssh_user={USER_KEY!r}, ssh_identity={bed.key_path("ed25519")!r},
                   ssh_known_hosts_file={bed.known_hosts!r}, ssh_port={bed.port}, forks=40, parallel_limit=40)
            hosts("web", {hosts})

            @task(on="web")
            def t():
                run("true")
            """)
        )

        def limit() -> None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (40, 40))

        env = {**os.environ, "NEXUS_SSH_CONFIG": "", "NO_COLOR": "1", "CI": "1"}
        env["XDG_STATE_HOME"] = str(tmp_path / "s")
        env.pop("SSH_AUTH_SOCK", None)
        out = subprocess.run([sys.executable, "-m", "nexus_core", "run", "t"], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=120, preexec_fn=limit)  # fmt: skip
    text = out.stdout + out.stderr
    assert out.returncode != 0, text
    assert "too many open files" in text.lower(), text
    assert "Traceback" not in text and "internal error" not in text, text
    assert "no key found" not in text, text  # a key file that could not be opened is not a missing key
    assert "(nexus-ssh) failed: OSError" not in text and "site-packages" not in text, text
    assert text.count("could not remove status files") <= 1, text


def test_the_connection_retries_module_is_imported_up_front_only_when_files_may_run_out() -> None:
    """``tenacity`` is imported before the hosts' threads start only when their connections could
    use up the open-files limit (a partial import under EMFILE); otherwise it waits for a retry."""
    from nexus_ssh.executor import _may_run_out_of_files

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(
            resource.RLIMIT_NOFILE, (4096 if hard == resource.RLIM_INFINITY else min(4096, hard), hard)
        )
        assert not _may_run_out_of_files(10, 4)
        assert _may_run_out_of_files(2000, 4)
        resource.setrlimit(resource.RLIMIT_NOFILE, (40, hard))
        assert _may_run_out_of_files(10, 4)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
