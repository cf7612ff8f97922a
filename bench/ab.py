"""A/B of two Nexus builds on the same loopback SSH hosts, alternating round by round.

Ratios from one sitting are what this shared machine can measure: a load that comes and goes
hits both builds alike when their rounds alternate. Typical use, a change against v0.1 or
against the last commit (a worktree with its own ``.venv``)::

    python bench/ab.py --a /path/to/old/.venv/bin/nexus --b .venv/bin/nexus
    python bench/ab.py --a OLD --b NEW --only W2 --rounds 7 --out ab-w2

Workloads (the Nexus side of ``bench/run.py``'s): ``W3`` 1 host x 1 command, ``W1`` 100 hosts
x 1 command, ``W2`` 10 hosts x 50 short commands (hosts in parallel), ``W5`` a local diamond
DAG of 200 ``true`` tasks, 10 at once. Columns: median wall
time, CPU (user+sys of the ``nexus`` process tree: the client) and the machine's busy time
(``/proc/stat``: hosts, sshd and kernel threads included), and B/A ratios of the medians.
Needs root (it starts ``sshd`` for the bed's test users), as ``bench/run.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nexus_core.testing.sshbed import USER_KEY, SshBed  # noqa: E402

#: name -> (hosts, commands, what)
WORKLOADS = {
    "W3": (1, 1, "1 host x 1 command"),
    "W1": (100, 1, "100 hosts x 1 command, all in parallel"),
    "W2": (10, 50, "10 hosts x 50 sequential commands, hosts in parallel"),
    "W5": (0, 200, "local diamond DAG of 200 `true` tasks, 10 at once"),
}


def write_dag(folder: Path, n_tasks: int, jobs: int = 10) -> str:
    """The diamond DAG of ``bench/run.py``'s W5; returns the last task's name."""
    from bench.workloads.nexus import dag_nexusfile

    folder.mkdir(parents=True, exist_ok=True)
    text, last = dag_nexusfile(n_tasks, jobs)
    (folder / "nexusfile.py").write_text(text)
    return last


def write_project(folder: Path, bed: SshBed, n_hosts: int, n_commands: int) -> None:
    """A nexusfile running ``n_commands`` echo commands on ``n_hosts`` bed hosts, all at once."""
    folder.mkdir(parents=True, exist_ok=True)
    hosts = ",\n    ".join(repr(f"{USER_KEY}@{h.address}:{h.port}") for h in bed.hosts[:n_hosts])
    body = "\n".join(f"    run('echo hello {i}')" for i in range(n_commands))
    (folder / "nexusfile.py").write_text(
        "from nexus_core import config, hosts, run, task\n\n"
        f"config(ssh_identity={bed.key_path()!r}, ssh_known_hosts_file={bed.known_hosts!r},\n"
        f"       parallel_limit={n_hosts}, forks={n_hosts})\n\n"
        f"hosts('bench',\n    {hosts},\n)\n\n\n@task(on='bench')\ndef work():\n{body}\n"
    )


def machine_busy() -> float:
    """Seconds of CPU the whole machine has spent busy since boot (``/proc/stat``: all but idle
    and iowait), kernel threads included: the hosts' shells and sshd, the file system's journal."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def measure(nexus: str, folder: Path, env: dict[str, str], task: str = "work") -> tuple[float, float, float]:
    """(wall s, CPU s of the process tree, busy s of the machine) of one ``nexus run TASK -q``;
    exits on a failed run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy = machine_busy()
    t0 = time.monotonic()
    proc = subprocess.run([nexus, "run", task, "-q"], cwd=folder, env=env, capture_output=True, text=True)
    wall = time.monotonic() - t0
    busy = machine_busy() - busy
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.exit(f"{nexus} failed (exit {proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), busy


def main(argv: list[str]) -> None:
    """Run the A/B and print (and optionally write) a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--a", required=True, help="the `nexus` executable of build A (the baseline)")
    parser.add_argument("--b", required=True, help="the `nexus` executable of build B")
    parser.add_argument("--only", default="W3,W2,W1,W5", help="workloads, comma-separated (default all)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per build and workload (default 5)")
    parser.add_argument("--mode", default="shell", choices=("shell", "exec"), help="ssh_session_mode")
    parser.add_argument("--out", default="", help="also write bench/results/OUT.md")
    parser.add_argument(
        "--journaled",
        action="store_true",
        help="the hosts' homes and the builds' state/cache folders on an ext4 with a journal (a loop"
        " device made for the sitting), as on a server: see journaled()",
    )
    args = parser.parse_args(argv)
    chosen = [w.strip() for w in args.only.split(",") if w.strip()]
    unknown = [w for w in chosen if w not in WORKLOADS]
    if unknown:
        sys.exit(f"unknown workload(s) {', '.join(unknown)}; choose from {', '.join(WORKLOADS)}")
    if not 1 <= args.rounds <= 50:
        sys.exit("--rounds must be within 1..50")
    builds = {"A": os.path.abspath(args.a), "B": os.path.abspath(args.b)}
    for name, path in builds.items():
        if not os.access(path, os.X_OK):
            sys.exit(f"--{name.lower()} {path}: not an executable")
    env = {**os.environ, "NEXUS_SSH_CONFIG": "", "NO_COLOR": "1", "CI": "1", "NEXUS_SSH_SESSION_MODE": args.mode}
    # An installed Nexus has its bytecode compiled (pip does it): with PYTHONDONTWRITEBYTECODE
    # set, a build whose sources changed since its last .pyc would recompile them at every
    # start and lose by tens of milliseconds what has nothing to do with the change.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    need = max(1, *(WORKLOADS[w][0] for w in chosen))
    lines = [
        f"# Nexus A/B ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, session mode {args.mode})",
        "",
        f"A = `{args.a}`, B = `{args.b}`; {args.rounds} rounds each, alternating, after a warm-up;",
        f"load average before: {os.getloadavg()[0]:.2f}."
        + (" Hosts' homes and state folders on a journaled ext4 (`--journaled`)." if args.journaled else ""),
        "",
        "| workload | A wall s | B wall s | B/A wall | A CPU s | B CPU s | B/A CPU"
        " | A machine s | B machine s | B/A machine |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    fs = journaled() if args.journaled else contextlib.nullcontext(None)
    with fs as root, SshBed(need, port=0, bastion=False) as bed, _work(root) as work:
        for w in chosen:
            n_hosts, n_commands, what = WORKLOADS[w]
            folder = work / w
            task = "work"
            if n_hosts:
                write_project(folder, bed, n_hosts, n_commands)
            else:
                task = write_dag(folder, n_commands)
            # Each build keeps its own state, data and cache folders, as one user's install
            # does: with one shared state database, each build's run would make the other's
            # next start re-check the file it changed (and read a history twice as long).
            envs = {
                name: {**env, **{f"XDG_{kind}_HOME": str(work / f"xdg-{name}" / kind.lower())
                                 for kind in ("STATE", "DATA", "CACHE")}}
                for name in builds
            }  # fmt: skip
            for name, path in builds.items():
                measure(path, folder, envs[name], task)  # warm-up: connections, bytecode, page cache
            got: dict[str, list[tuple[float, float, float]]] = {"A": [], "B": []}
            for r in range(args.rounds):
                order = ("A", "B") if r % 2 == 0 else ("B", "A")
                for name in order:
                    got[name].append(measure(builds[name], folder, envs[name], task))
            wall = {n: statistics.median(x[0] for x in v) for n, v in got.items()}
            cpu = {n: statistics.median(x[1] for x in v) for n, v in got.items()}
            busy = {n: statistics.median(x[2] for x in v) for n, v in got.items()}
            lines.append(
                f"| {w} ({what}) | {wall['A']:.2f} | {wall['B']:.2f} | {wall['B'] / wall['A']:.2f} "
                f"| {cpu['A']:.2f} | {cpu['B']:.2f} | {cpu['B'] / cpu['A']:.2f} "
                f"| {busy['A']:.2f} | {busy['B']:.2f} | {busy['B'] / max(busy['A'], 0.01):.2f} |"
            )
            print(lines[-1], flush=True)
    lines += ["", f"Load average after: {os.getloadavg()[0]:.2f}. A ratio below 1 means B was faster."]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        (ROOT / "bench" / "results" / f"{args.out}.md").write_text(text)


class _work:
    """A temporary folder for the generated projects (removed at the end), in ``root`` if given."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root

    def __enter__(self) -> Path:
        import tempfile

        self.path = Path(tempfile.mkdtemp(prefix="nexus-ab-", dir=self.root))
        return self.path

    def __exit__(self, *exc: object) -> None:
        import shutil

        shutil.rmtree(self.path, ignore_errors=True)


@contextlib.contextmanager
def journaled(size: str = "4G", extra: tuple[Path, ...] = ()) -> Iterator[Path]:
    """A fresh ext4 *with* a journal on a loop device for the sitting; the bed's homes
    (``HOME_ROOT``, bind-mounted from it, existing content copied) and the work folder live
    there. Why: an ext4 without a journal (this kind of VM's root) makes every new file skip
    the inodes freed in the last minutes one by one (``recently_deleted``), so back-to-back
    rounds that make and remove spool files measure that quirk, not Nexus
    (docs/decisions.md, "The spool's own cost"). ``extra``: more folders to bind-mount from
    it (the file workloads' destinations). Root only; everything is undone at the end.
    """
    import shutil
    import tempfile

    from nexus_core.testing.sshbed import HOME_ROOT

    if os.geteuid() != 0:
        sys.exit("--journaled needs root (mkfs.ext4, mount)")
    base = Path(tempfile.mkdtemp(prefix="nexus-ab-fs-", dir="/var/tmp"))
    image, mnt = base / "fs.img", base / "mnt"
    mnt.mkdir()
    mounted: list[Path] = []
    try:
        subprocess.run(["truncate", "-s", size, str(image)], check=True)
        subprocess.run(["mkfs.ext4", "-q", "-F", "-O", "has_journal", str(image)], check=True)
        subprocess.run(["mount", "-o", "loop", str(image), str(mnt)], check=True)
        mounted.append(mnt)
        HOME_ROOT.mkdir(parents=True, exist_ok=True)
        (mnt / "home").mkdir()
        subprocess.run(["cp", "-a", f"{HOME_ROOT}/.", str(mnt / "home")], check=True)  # owners kept
        subprocess.run(["mount", "--bind", str(mnt / "home"), str(HOME_ROOT)], check=True)
        mounted.append(HOME_ROOT)
        for i, path in enumerate(extra):
            (mnt / f"extra-{i}").mkdir(mode=0o1777)
            os.chmod(mnt / f"extra-{i}", 0o1777)  # as /tmp: every bed user writes there
            path.mkdir(parents=True, exist_ok=True)
            subprocess.run(["mount", "--bind", str(mnt / f"extra-{i}"), str(path)], check=True)
            mounted.append(path)
        (mnt / "work").mkdir()
        yield mnt / "work"
    finally:
        for path in reversed(mounted):
            subprocess.run(["umount", "-l", str(path)], check=False)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv[1:])
