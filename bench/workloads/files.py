"""File-transfer workloads (W9, W10): every tool's own way of copying files to the bed's hosts.

W9 copies one 10 MB file to each host; W10 a tree of 1,000 small files. Each cold run
starts from empty destinations (``cold`` removes and recreates them); the second run right
after it (nothing changed) shows how much each tool does for nothing.

The bed's hosts are one machine, so each tool and host gets its own destination folder,
``/tmp/nxb-files/TOOL/HOST/``, created (owned by the bed user) before each cold run:

* ``nexus``: ``upload(...)`` (``recursive=True`` for the tree), over SFTP on pooled connections;
  its checksum cache (``NEXUS_CHECKSUM_CACHE``) is emptied with the destinations, so a cold
  run hashes everything on both sides and only the re-run finds kept checksums.
* ``pyinfra``: ``files.put`` / ``files.sync``.
* ``ansible``: the ``copy`` module (defaults; ``ansible-tuned``: forks = hosts, pipelining).
* ``rsync``: ``rsync -a`` over OpenSSH, one background job per host.
"""

from __future__ import annotations

import os
import shlex
import shutil
from pathlib import Path

from bench.workloads import Invocation, Target, fresh_dir, nexus

DEST_ROOT = Path("/tmp/nxb-files")


def make_sources(root: Path) -> tuple[Path, Path]:
    """The 10 MB file and the 1,000-file tree (10 folders x 100 files of 1-4 KB), made once."""
    root.mkdir(parents=True, exist_ok=True)
    big = root / "big.bin"
    if not big.exists() or big.stat().st_size != 10 << 20:
        big.write_bytes(os.urandom(10 << 20))
    tree = root / "tree"
    if not tree.exists() or sum(1 for _ in tree.rglob("*.txt")) != 1000:
        shutil.rmtree(tree, ignore_errors=True)
        for d in range(10):
            folder = tree / f"d{d}"
            folder.mkdir(parents=True)
            for f in range(100):
                (folder / f"f{f}.txt").write_bytes(os.urandom(512 + 32 * f).hex().encode()[: 1024 + 30 * f])
    return big, tree


def _cold(tool: str, hosts: list[str], user: str) -> None:
    """Empty destination folders for ``tool``, one per host, owned by the bed user."""
    DEST_ROOT.mkdir(mode=0o755, exist_ok=True)
    base = DEST_ROOT / tool
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir()
    shutil.chown(base, user, user)
    for h in hosts:
        (base / h).mkdir()
        shutil.chown(base / h, user, user)


def _dest(tool: str, host_expr: str) -> str:
    return f"{DEST_ROOT}/{tool}/{host_expr}"


def _with_cold(inv: Invocation, tool: str, hosts: list[str], user: str) -> Invocation:
    inv.cold = lambda: _cold(tool, hosts, user)
    inv.cleanup = lambda: shutil.rmtree(DEST_ROOT / tool, ignore_errors=True)
    inv.cold()
    return inv


def nexus_files(root: Path, target: Target, n_hosts: int, source: Path, tree: bool) -> Invocation:
    """A nexusfile uploading ``source`` (``recursive=True`` for a tree) to each host."""
    work = fresh_dir(root, f"nexus-files-{'tree' if tree else 'file'}")
    hosts = target.take(n_hosts)
    host_list = ",\n    ".join(repr(f"{target.user}@{a}:{target.port}") for a in hosts)
    dest = _dest("nexus", "{hostname()}") + ("/tree" if tree else "/")
    op = f"upload({str(source)!r}, f{dest!r}" + (", recursive=True)" if tree else ")")
    (work / "nexusfile.py").write_text(
        "from nexus_core import config, hostname, hosts, task, upload\n\n"
        f"config(\n    ssh_identity={target.key!r},\n    ssh_known_hosts_file={target.known_hosts!r},\n"
        f"    parallel_limit={n_hosts},\n    forks={n_hosts},\n)\n\n"
        f"hosts(\n    'bench',\n    {host_list},\n)\n\n\n"
        f"@task(on='bench')\ndef work():\n    {op}\n"
    )
    sums = work / "checksums.db"  # the checksum cache kept between runs: emptied for each cold run
    inv = Invocation(
        tool="nexus",
        argv=[*nexus.nexus_cmd(), "run", "work", "-q"],
        cwd=str(work),
        env={"NEXUS_SSH_CONFIG": "", "NO_COLOR": "1", "CI": "1", "NEXUS_CHECKSUM_CACHE": str(sums)},
    )
    _with_cold(inv, "nexus", hosts, target.user)
    dest_only = inv.cold

    def cold() -> None:
        if dest_only is not None:
            dest_only()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{sums}{suffix}").unlink(missing_ok=True)

    inv.cold = cold
    cold()
    return inv


def pyinfra_files(root: Path, target: Target, n_hosts: int, source: Path, tree: bool, pyinfra_bin: str) -> Invocation:
    """``files.put`` (one file) or ``files.sync`` (the tree) on each host."""
    work = fresh_dir(root, f"pyinfra-files-{'tree' if tree else 'file'}")
    hosts = target.take(n_hosts)
    data = {
        "ssh_port": target.port,
        "ssh_user": target.user,
        "ssh_key": target.key,
        "ssh_known_hosts_file": target.known_hosts,
        "ssh_strict_host_key_checking": "yes",
        "ssh_allow_agent": False,
        "ssh_look_for_keys": False,
    }
    (work / "inventory.py").write_text(f"_DATA = {data!r}\nbench = [(a, dict(_DATA)) for a in {hosts!r}]\n")
    dest = _dest("pyinfra", "{host.name}")
    if tree:
        op = f"files.sync(name='bench', src={str(source)!r}, dest=f{dest + '/tree'!r})"
    else:
        op = f"files.put(name='bench', src={str(source)!r}, dest=f{dest + '/big.bin'!r})"
    (work / "deploy.py").write_text(f"from pyinfra import host\nfrom pyinfra.operations import files\n\n{op}\n")
    inv = Invocation(
        tool="pyinfra",
        argv=[pyinfra_bin, "-y", "--parallel", str(n_hosts), "inventory.py", "deploy.py"],
        cwd=str(work),
    )
    return _with_cold(inv, "pyinfra", hosts, target.user)


def ansible_files(
    root: Path, target: Target, n_hosts: int, source: Path, tree: bool, ansible_bin: str, *, tuned: bool
) -> Invocation:
    """The ``copy`` module (a folder source with a trailing ``/`` copies its contents)."""
    from bench.workloads import ansible

    name = "ansible-tuned" if tuned else "ansible"
    inv = ansible.remote(root / f"{name}-files-{'tree' if tree else 'file'}", target, n_hosts, ["true"],
                         ansible_bin, tuned=tuned)  # fmt: skip
    work = Path(inv.cwd)
    dest = _dest(name, "{{ inventory_hostname }}") + ("/tree/" if tree else "/big.bin")
    src = f"{source}/" if tree else str(source)
    (work / "playbook.yml").write_text(
        "- hosts: bench\n  gather_facts: false\n  tasks:\n"
        f"    - name: copy\n      copy:\n        src: {src!r}\n        dest: {dest!r}\n"
    )
    inv.env["ANSIBLE_PYTHON_INTERPRETER"] = "auto_silent"
    inv.expect_sessions = None
    inv.expect_stdout = ("failed=0", n_hosts)
    previous_cold, previous_cleanup = inv.cold, inv.cleanup

    def cold() -> None:
        if previous_cold is not None:
            previous_cold()
        _cold(name, target.take(n_hosts), target.user)

    def cleanup() -> None:
        if previous_cleanup is not None:
            previous_cleanup()
        shutil.rmtree(DEST_ROOT / name, ignore_errors=True)

    inv.cold, inv.cleanup = cold, cleanup
    cold()
    return inv


def rsync_files(root: Path, target: Target, n_hosts: int, source: Path, tree: bool) -> Invocation:
    """``rsync -a`` over OpenSSH (``-F none``, the bed's key), one background job per host."""
    work = fresh_dir(root, f"rsync-files-{'tree' if tree else 'file'}")
    hosts = target.take(n_hosts)
    ssh = shlex.join([
        "ssh", "-F", "none", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=yes",
        "-o", f"UserKnownHostsFile={target.known_hosts}", "-i", target.key, "-p", str(target.port),
    ])  # fmt: skip
    src = f"{source}/" if tree else str(source)
    suffix = "/tree/" if tree else "/"
    lines = [
        "#!/bin/sh",
        "host() {",
        f'  rsync -a -e {shlex.quote(ssh)} {shlex.quote(src)} {target.user}@"$1":{_dest("rsync", "")}"$1"{suffix}',
        "}",
        "pids=''",
        f"for h in {' '.join(hosts)}; do",
        '  host "$h" &',
        '  pids="$pids $!"',
        "done",
        "rc=0",
        "for p in $pids; do wait $p || rc=1; done",
        "exit $rc",
    ]
    script = work / "copy.sh"
    script.write_text("\n".join(lines) + "\n")
    inv = Invocation(tool="rsync", argv=["/bin/sh", str(script)], cwd=str(work), note="rsync -a over OpenSSH")
    return _with_cold(inv, "rsync", hosts, target.user)
