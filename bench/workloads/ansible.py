"""ansible-core inputs: an INI inventory, an ``ansible.cfg`` and a playbook of ``raw`` tasks.

Two variants:

* ``ansible`` - Ansible's defaults: forks 5, no pipelining, the default ``ssh_args``
  (``-C -o ControlMaster=auto -o ControlPersist=60s``).
* ``ansible-tuned`` - forks = host count, pipelining on, ControlPersist 300 s.

``raw`` runs the command over ``ansible_connection=ssh`` (OpenSSH client) with no module
transfer and no Python on the host; ``gather_facts: false``. Each cold run gets a fresh
ControlPath folder (so no master left by an earlier run is reused); W7's second run keeps it.
Masters left by ControlPersist are stopped (by pid) when the folder is retired.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import time
from pathlib import Path

from bench.workloads import Invocation, Target, fresh_dir


def _masters(control_dir: str) -> list[int]:
    """PIDs of ssh ControlMaster processes whose command line names ``control_dir``."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if cmdline.startswith("ssh") and control_dir in cmdline:
            pids.append(int(entry))
    return pids


def stop_masters(control_dir: str) -> None:
    """Stop the ControlPersist masters of ``control_dir`` (SIGTERM, bounded wait) and remove it."""
    pids = _masters(control_dir)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 5
    while pids and time.monotonic() < deadline:
        pids = [p for p in pids if Path(f"/proc/{p}").exists() and _state(p) != "Z"]
        time.sleep(0.02)
    shutil.rmtree(control_dir, ignore_errors=True)


def _state(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "Z"
    return stat[stat.rfind(")") + 2 :].split()[0]


def remote(
    root: Path, target: Target, n_hosts: int, commands: list[str], ansible_bin: str, *, tuned: bool
) -> Invocation:
    """A playbook of one ``raw`` task per command, on ``n_hosts`` hosts."""
    name = "ansible-tuned" if tuned else "ansible"
    work = fresh_dir(root, f"{name}-{n_hosts}x{len(commands)}")
    hosts = target.take(n_hosts)
    common = (
        f"-F none -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=yes "
        f"-o UserKnownHostsFile={target.known_hosts}"
    )
    (work / "inventory.ini").write_text(
        "[bench]\n"
        + "".join(f"{a}\n" for a in hosts)
        + "\n[bench:vars]\n"
        + "ansible_connection=ssh\n"
        + f"ansible_port={target.port}\n"
        + f"ansible_user={target.user}\n"
        + f"ansible_ssh_private_key_file={target.key}\n"
        + f"ansible_ssh_common_args='{common}'\n"
    )
    cfg = ["[defaults]", "host_key_checking = True", "retry_files_enabled = False", "nocolor = True"]
    if tuned:
        cfg += [f"forks = {n_hosts}", "", "[ssh_connection]", "pipelining = True"]
        cfg += ["ssh_args = -C -o ControlMaster=auto -o ControlPersist=300s"]
    (work / "ansible.cfg").write_text("\n".join(cfg) + "\n")
    tasks = "".join(f"    - name: c{i}\n      raw: {c!r}\n" for i, c in enumerate(commands))
    (work / "playbook.yml").write_text(f"- hosts: bench\n  gather_facts: false\n  tasks:\n{tasks}")
    (work / "tmp").mkdir()
    inv = Invocation(
        tool=name,
        argv=[ansible_bin, "-i", str(work / "inventory.ini"), str(work / "playbook.yml")],
        cwd=str(work),
        env={
            "ANSIBLE_CONFIG": str(work / "ansible.cfg"),
            "ANSIBLE_HOME": str(work / "home"),
            "ANSIBLE_LOCAL_TEMP": str(work / "tmp"),
            "ANSIBLE_NOCOLOR": "1",
        },
        expect_stdout=("failed=0", n_hosts),
        expect_sessions=n_hosts * len(commands),
        expect_hosts=hosts,
        note="forks=N, pipelining, ControlPersist=300s" if tuned else "defaults: forks=5, ControlPersist=60s",
    )
    state = {"dir": ""}

    def cold() -> None:
        if state["dir"]:
            stop_masters(state["dir"])
        # Unix socket paths are short: keep the ControlPath folder under /tmp.
        state["dir"] = tempfile.mkdtemp(prefix="nxb-cp-")
        inv.env["ANSIBLE_SSH_CONTROL_PATH_DIR"] = state["dir"]

    def cleanup() -> None:
        if state["dir"]:
            stop_masters(state["dir"])
            state["dir"] = ""

    inv.cold, inv.cleanup = cold, cleanup
    cold()
    return inv


def exec_adhoc(root: Path, target: Target, n_hosts: int, command: str, ansible_bin: str, *, tuned: bool) -> Invocation:
    """``ansible all -m shell -a COMMAND`` (the ad-hoc command Ansible users type), W8.

    The same inventory and ``ansible.cfg`` as :func:`remote`; ``shell`` is a Python module, so
    each host runs Ansible's module wrapper with the host's ``python3``.
    """
    inv = remote(root, target, n_hosts, [command], ansible_bin, tuned=tuned)
    work = Path(inv.cwd)
    adhoc = str(Path(ansible_bin).with_name("ansible"))
    inv.argv = [adhoc, "all", "-i", str(work / "inventory.ini"), "-m", "shell", "-a", command]
    inv.expect_stdout = ("CHANGED | rc=0", n_hosts)
    inv.expect_sessions = n_hosts
    inv.env["ANSIBLE_PYTHON_INTERPRETER"] = "auto_silent"
    inv.note += "; ad-hoc -m shell"
    # A module leaves ~/.ansible/tmp in the bed user's home, which must stay empty (rc files
    # and caches there would cost every later tool server CPU): remove it afterwards.
    stop = inv.cleanup

    def cleanup() -> None:
        if stop is not None:
            stop()
        import pwd

        with contextlib.suppress(KeyError):
            shutil.rmtree(Path(pwd.getpwnam(target.user).pw_dir) / ".ansible", ignore_errors=True)

    inv.cleanup = cleanup
    return inv
