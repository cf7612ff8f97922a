#!/usr/bin/env python3
"""Nexus against Ansible, pyinfra, Fabric, Make, Invoke and plain OpenSSH, on loopback hosts.

    python bench/run.py                  # everything (about 10-15 minutes on 2 cores)
    python bench/run.py --quick          # small sizes, 2 runs: a smoke test of the harness
    python bench/run.py --only W1,W5     # some workloads
    python bench/run.py --hosts-max 50   # cap every host count
    python3 dev.py bench [ARGS]          # install Nexus into .venv, then this

Needs root (it starts its own sshd test bed, ``nexus_core/testing/sshbed.py``, on 127.0.0.2...
with port 2299 by default, and stops it at exit). Peers are installed into
``bench/.peers/<name>/`` by ``bench/peers.py``. Results: ``bench/results/peers.{md,json}``
and ``bench/results/sweep.png`` (``--quick``: ``peers-quick.*``, ``sweep-quick.png``).
See bench/README.md for what each workload means.

Each workload runs every tool once as a warm-up (checked, not recorded), then ``runs``
rounds; in each round every tool runs once, the order rotating, so a Nexus/peer ratio is
taken between two runs made at nearly the same moment. Every run is checked: exit code,
expected output, and the SSH exec sessions that sshd logged on every host. A failing run
is reported with its error and never counted as a figure.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import dataclasses
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
WORK = HERE / ".work"
sys.path.insert(0, str(ROOT))

from bench import peers as peers_mod  # noqa: E402
from bench.workloads import (  # noqa: E402
    Invocation,
    Target,
    ansible,
    fabric,
    invoke,
    make,
    nexus,
    pyinfra,
    shell,
)

RUN_TIMEOUT = 300.0  # seconds for one tool run
PAGE_MB = os.sysconf("SC_PAGE_SIZE") / (1024 * 1024)
TICK = os.sysconf("SC_CLK_TCK")

WORKLOADS = {
    "W1": "N hosts x 1 command (echo hello), all in parallel",
    "W2": "10 hosts x 50 sequential commands, hosts in parallel",
    "W3": "1 host x 1 command (latency to first result)",
    "W4": "host-count sweep x 1 command",
    "W5": "local DAG: 200 `true` tasks, diamond-shaped dependencies",
    "W6": "1,000-line nexusfile validate; 500 tasks x 100 commands dry-run plan",
    "W7": "W2 again right after the first run (connection reuse across runs)",
    "W8": "ad-hoc command: N hosts x `echo hello` (nexus exec / ansible -m shell / pyinfra exec)",
    "W9": "one 10 MB file to 10 hosts (upload / files.put / copy / rsync)",
    "W10": "a tree of 1,000 small files to 10 hosts (upload recursive / files.sync / copy / rsync)",
    "W9R": "W9 again right after, nothing changed",
    "W10R": "W10 again right after, nothing changed",
}
REMOTE_TOOLS = ["nexus", "fabric", "pyinfra", "ansible", "ansible-tuned", "ssh-loop", "ssh-joined", "rsync"]
#: The workloads that need the SSH bed.
SSH_WORKLOADS = ("W1", "W2", "W3", "W4", "W7", "W8", "W9", "W10", "W9R", "W10R")


def log(msg: str) -> None:
    """Progress on stderr."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --- measuring one run ---------------------------------------------------------------------


@dataclasses.dataclass
class Sample:
    """One measured run of one tool."""

    wall: float
    cpu: float  # user+sys of the child and the descendants it waited for
    rss_mb: float  # ru_maxrss: the largest single process of the tree
    tree_rss_mb: float  # sampled sum of RSS over the child's session (every 0.1 s)
    server_cpu: float  # sshd CPU (children of the bed's listeners) during the run
    error: str = ""


class TreeRss:
    """Samples the summed RSS of every process in session ``sid`` until stopped."""

    def __init__(self, sid: int, interval: float = 0.1) -> None:
        self.sid, self.interval, self.peak = sid, interval, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> TreeRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        for _ in range(int(RUN_TIMEOUT / self.interval) + 10):
            total = 0
            for entry in os.listdir("/proc"):
                if not entry.isdigit():
                    continue
                try:
                    stat = Path(f"/proc/{entry}/stat").read_bytes().decode(errors="replace")
                except OSError:
                    continue
                f = stat[stat.rfind(")") + 2 :].split()
                if len(f) > 21 and int(f[3]) == self.sid:
                    total += int(f[21])
            self.peak = max(self.peak, total * PAGE_MB)
            if self._stop.wait(self.interval):
                return


class SshdWatch:
    """Reads the bed's sshd logs incrementally: exec sessions per host address; server CPU."""

    CONN = re.compile(r"Connection from \S+ port (\d+) on (\S+) port \d+")
    # "command for U" or, with a PTY (Ansible's raw uses -tt), "command on pts/N for U".
    SESSION = re.compile(r"Starting session: command (?:on \S+ )?for \S+ from \S+ port (\d+)")

    def __init__(self, bed: object) -> None:
        self.bed = bed
        self.logs = sorted({bed.log_path(h.address) for h in bed.hosts})  # type: ignore[attr-defined]
        self.offsets = {p: 0 for p in self.logs}
        self.ports: dict[str, dict[str, str]] = {p: {} for p in self.logs}
        self.read()

    def read(self) -> dict[str, int]:
        """Sessions per host address since the last call.

        sshd's session line names only the client's port, matched to the last "Connection
        from ... port P on ADDR" of the same log; the kernel may give the same source port to
        connections to two addresses, so the split per address is a best effort (the total
        is exact). Addresses that accepted a new connection are in :attr:`connected`.
        """
        out: dict[str, int] = {}
        self.connected: set[str] = set()
        for path in self.logs:
            with open(path, "rb") as fh:
                fh.seek(self.offsets[path])
                data = fh.read()
            # Only whole lines: a line being written stays for the next call.
            cut = data.rfind(b"\n") + 1
            self.offsets[path] += cut
            ports = self.ports[path]
            for line in data[:cut].decode(errors="replace").splitlines():
                m = self.CONN.search(line)
                if m:
                    ports[m.group(1)] = m.group(2)
                    self.connected.add(m.group(2))
                    continue
                m = self.SESSION.search(line)
                if m:
                    addr = ports.get(m.group(1), "?")
                    out[addr] = out.get(addr, 0) + 1
        return out

    def server_cpu(self) -> float:
        """CPU seconds of every finished sshd session child (cutime+cstime of the listeners)."""
        total = 0
        for pid in self.bed.sshd_pids():  # type: ignore[attr-defined]
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                continue
            f = stat[stat.rfind(")") + 2 :].split()
            total += int(f[13]) + int(f[14]) + int(f[11]) + int(f[12])
        return total / TICK


def _tail(text: str, n: int = 12) -> str:
    return "\n".join(text.strip().splitlines()[-n:])


def measure(inv: Invocation, watch: SshdWatch | None, *, sample_tree: bool = True) -> Sample:
    """Run ``inv`` once (bounded by RUN_TIMEOUT), measure it with wait4, and check it worked."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        if watch is not None:
            watch.read()
            cpu0 = watch.server_cpu()
        start = time.perf_counter()
        proc = subprocess.Popen(
            inv.argv,
            cwd=inv.cwd,
            env=inv.full_env(),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
        timed_out = threading.Event()

        def kill() -> None:
            timed_out.set()
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)

        timer = threading.Timer(RUN_TIMEOUT, kill)
        timer.daemon = True  # never keeps the harness alive
        timer.start()
        tree = TreeRss(proc.pid) if sample_tree else contextlib.nullcontext()
        try:
            with tree:
                _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            kill()
            raise
        finally:
            timer.cancel()
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        # Leftovers of the run's session (a tool that left children behind) are ended here.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        server_cpu = 0.0
        sessions: dict[str, int] = {}
        connected: set[str] = set()
        if watch is not None:
            time.sleep(0.05)  # let sshd log and reap the last session processes
            sessions = watch.read()
            connected = watch.connected
            server_cpu = watch.server_cpu() - cpu0
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        stderr = err.read().decode(errors="replace")
    sample = Sample(
        wall=wall,
        cpu=usage.ru_utime + usage.ru_stime,
        rss_mb=usage.ru_maxrss / 1024,
        tree_rss_mb=getattr(tree, "peak", 0.0),
        server_cpu=server_cpu,
    )
    sample.error = check(inv, proc.returncode, stdout, stderr, sessions, connected, timed_out.is_set())
    return sample


def check(
    inv: Invocation,
    rc: int,
    stdout: str,
    stderr: str,
    sessions: dict[str, int],
    connected: set[str],
    timed_out: bool,
) -> str:
    """Why this run does not count (empty string: it really did the work)."""
    both = f"--- stdout:\n{_tail(stdout)}\n--- stderr:\n{_tail(stderr)}"
    if timed_out:
        return f"timed out after {RUN_TIMEOUT:g}s\n{both}"
    if rc != 0:
        return f"exit code {rc}\n{both}"
    if inv.expect_stdout is not None:
        text, count = inv.expect_stdout
        seen = stdout.count(text)
        if seen < count:
            return f"stdout shows {text!r} {seen} times, expected at least {count}\n{both}"
    if inv.expect_sessions is not None:
        total = sum(sessions.values())
        # A host counts as reached when sshd logged a new connection to it or a session
        # matched to it (a connection kept from the previous run, W7, logs no new one).
        missing = [h for h in inv.expect_hosts if not sessions.get(h) and h not in connected]
        if total < inv.expect_sessions or missing:
            return (
                f"sshd logged {total} exec sessions (expected >= {inv.expect_sessions}); "
                f"hosts without any: {missing[:5]}{' ...' if len(missing) > 5 else ''}\n{both}"
            )
    return ""


# --- statistics ------------------------------------------------------------------------------


def spread(values: Iterable[float]) -> dict[str, float]:
    """Median, min and max."""
    v = list(values)
    return {"median": statistics.median(v), "min": min(v), "max": max(v)} if v else {}


@dataclasses.dataclass
class ToolResult:
    """Every recorded sample of one tool in one case."""

    tool: str
    version: str = ""
    note: str = ""
    samples: list[Sample] = dataclasses.field(default_factory=list)
    error: str = ""
    skipped: str = ""

    def as_json(self) -> dict[str, object]:
        """Summary plus raw samples."""
        good = [s for s in self.samples if not s.error]
        out: dict[str, object] = {"version": self.version, "note": self.note}
        if self.skipped:
            out["skipped"] = self.skipped
        if self.error:
            out["error"] = self.error
        if good:
            out |= {
                "runs": len(good),
                "wall": spread(s.wall for s in good),
                "cpu": spread(s.cpu for s in good),
                "rss_mb": spread(s.rss_mb for s in good),
                "tree_rss_mb": spread(s.tree_rss_mb for s in good),
                "server_cpu": spread(s.server_cpu for s in good),
                "samples": [dataclasses.asdict(s) for s in good],
            }
        return out


@dataclasses.dataclass
class Case:
    """One workload at one size, measured for several tools in rounds."""

    key: str
    title: str
    params: dict[str, object]
    base: str = "nexus"
    tools: dict[str, ToolResult] = dataclasses.field(default_factory=dict)
    rounds: list[dict[str, float]] = dataclasses.field(default_factory=list)  # tool -> wall per round
    load: list[float] = dataclasses.field(default_factory=list)

    def ratios(self) -> dict[str, dict[str, float]]:
        """Nexus wall / peer wall, pair by pair within each round; median and min-max."""
        out = {}
        for tool in self.tools:
            if tool == self.base:
                continue
            pairs = [r[self.base] / r[tool] for r in self.rounds if self.base in r and tool in r and r[tool] > 0]
            if pairs:
                out[tool] = spread(pairs)
        return out

    def as_json(self) -> dict[str, object]:
        """Everything about the case."""
        return {
            "title": self.title,
            "params": self.params,
            "base": self.base,
            "load_avg_before_after": self.load,
            "tools": {t: r.as_json() for t, r in self.tools.items()},
            "ratios": self.ratios(),
        }


def loadavg() -> float:
    """One-minute load average (other work on the machine shows here)."""
    return float(Path("/proc/loadavg").read_text().split()[0])


def run_rounds(
    case: Case,
    invocations: dict[str, Invocation],
    watch: SshdWatch | None,
    runs: int,
    versions: dict[str, str],
    *,
    second: Case | None = None,
) -> None:
    """Warm-up + ``runs`` rounds of every tool, order rotating; failures are reported, not counted.

    With ``second`` (W7), each cold run is followed at once by a second run of the same
    invocation, recorded in ``second``.
    """
    order = list(invocations)
    cases = [c for c in (case, second) if c is not None]
    for c in cases:
        c.load.append(loadavg())
        for tool, inv in invocations.items():
            c.tools[tool] = ToolResult(tool, versions.get(tool, ""), inv.note)
    try:
        _rounds(case, invocations, watch, runs, cases, order, second is not None)
    finally:
        for c in cases:
            c.load.append(loadavg())
        for inv in invocations.values():
            if inv.cleanup is not None:
                inv.cleanup()


def _rounds(
    case: Case,
    invocations: dict[str, Invocation],
    watch: SshdWatch | None,
    runs: int,
    cases: list[Case],
    order: list[str],
    twice: bool,
) -> None:
    failed: set[str] = set()
    for rnd in range(runs + 1):
        rotated = order[rnd % len(order) :] + order[: rnd % len(order)]
        walls: list[dict[str, float]] = [{} for _ in cases]
        for tool in rotated:
            if tool in failed:
                continue
            inv = invocations[tool]
            if inv.cold is not None:
                inv.cold()
                time.sleep(0.1)
            samples = [measure(inv, watch)]
            if twice and not samples[0].error:
                samples.append(measure(inv, watch))
            for c, s, w in zip(cases, samples, walls, strict=False):
                label = "warm-up" if rnd == 0 else f"run {rnd}"
                if s.error:
                    failed.add(tool)
                    c.tools[tool].error = f"{label}: {s.error}"
                    log(f"{c.key} {tool} FAILED ({label}): {s.error}")
                    continue
                w[tool] = s.wall
                if rnd > 0:
                    c.tools[tool].samples.append(s)
        if rnd > 0:
            for c, w in zip(cases, walls, strict=False):
                c.rounds.append(w)
        log(
            f"{case.key} {'warm-up' if rnd == 0 else f'round {rnd}/{runs}'}: "
            + ", ".join(f"{t} {w:.2f}s" for t, w in walls[0].items())
        )


# --- the benchmark ---------------------------------------------------------------------------


@dataclasses.dataclass
class Settings:
    """Sizes and repeats for one invocation of the harness."""

    quick: bool
    only: list[str]
    hosts_max: int
    runs: int
    runs_cheap: int
    port: int
    profile: bool
    tools: list[str]
    nexus: str = "installed"
    out: str = "peers"
    journaled: bool = False

    @property
    def w1_hosts(self) -> int:
        """Hosts of W1 (100, capped)."""
        return min(100, self.hosts_max)

    @property
    def w2_shape(self) -> tuple[int, int]:
        """Hosts x commands of W2/W7."""
        return (min(10, self.hosts_max), 10 if self.quick else 50)

    @property
    def sweep(self) -> list[int]:
        """Host counts of W4."""
        points = [1, 5, 10, 20] if self.quick else [1, 10, 50, 100, 200]
        return [p for p in points if p <= self.hosts_max] or [self.hosts_max]

    def bed_hosts(self) -> int:
        """Hosts the bed must have for the selected workloads."""
        need = 1
        if "W1" in self.only or self.profile:
            need = max(need, self.w1_hosts)
        if "W2" in self.only or "W7" in self.only:
            need = max(need, self.w2_shape[0])
        if "W4" in self.only:
            need = max(need, *self.sweep)
        if "W8" in self.only:
            need = max(need, self.w1_hosts)
        if any(w in self.only for w in ("W9", "W10", "W9R", "W10R")):
            need = max(need, min(10, self.hosts_max))
        return need


class Bench:
    """Runs the selected workloads and keeps every case."""

    def __init__(self, settings: Settings) -> None:
        self.s = settings
        self.cases: list[Case] = []
        self.peers: dict[str, peers_mod.Peer] = {}
        self.versions: dict[str, str] = {}
        self.skipped: dict[str, str] = {}
        self.bed: object | None = None
        self.target: Target | None = None
        self.watch: SshdWatch | None = None
        self.nexus_version = ""

    # set-up

    def install_peers(self) -> None:
        """Install the peer venvs (idempotent) and note the versions."""
        self.peers = peers_mod.ensure_all()
        if self.s.nexus in ("snapshot", "head"):
            frozen = peers_mod.nexus_frozen(self.s.nexus, ROOT)
            if not frozen.ok:
                raise SystemExit(f"could not install Nexus from {self.s.nexus}: {frozen.note}")
            nexus.set_cli([frozen.script("nexus")])
        elif self.s.nexus != "installed":
            nexus.set_cli([self.s.nexus])
        else:
            compile_sources()
        for name, peer in self.peers.items():
            if not peer.ok:
                self.skipped[name] = peer.note.splitlines()[0] if peer.note else "install failed"
        for name, version in peers_mod.system_tools().items():
            self.versions[name] = version
        self.versions["ansible"] = self.versions["ansible-tuned"] = (
            f"ansible-core {self.peers['ansible'].version}" if self.peers["ansible"].ok else ""
        )
        self.versions["pyinfra"] = self.peers["pyinfra"].version
        self.versions["fabric"] = self.peers["fabric"].version
        self.versions["invoke"] = self.peers["invoke"].version
        self.versions["ssh-loop"] = self.versions["ssh-joined"] = self.versions.get("ssh", "")
        proc = subprocess.run([*nexus.nexus_cmd(), "--version"], capture_output=True, text=True, timeout=60)
        self.nexus_version = (proc.stdout or proc.stderr).strip().splitlines()[0]
        self.versions["nexus"] = f"{self.nexus_version} ({self.s.nexus}: {nexus.nexus_cmd()[0]})"
        plugins = subprocess.run([*nexus.nexus_cmd(), "plugins"], capture_output=True, text=True, timeout=60)
        if "nexus-ssh" not in plugins.stdout:
            raise SystemExit(
                "nexus-ssh is not installed next to the nexus CLI "
                f"({nexus.nexus_cmd()[0]}): pip install -e plugins/nexus_ssh --no-deps"
            )

    def start_bed(self) -> None:
        """Start the loopback sshd bed (stopped at exit, whatever happens)."""
        from nexus_core.testing.sshbed import USER_KEY, SshBed

        n = self.s.bed_hosts()
        log(f"starting the sshd bed: {n} hosts on 127.0.0.2.. port {self.s.port}")
        bed = SshBed(n_hosts=n, port=self.s.port, bastion=False, start_timeout=60)
        atexit.register(bed.stop)
        bed.start()
        self.bed = bed
        self.target = Target(
            user=USER_KEY,
            key=bed.key_path("ed25519"),
            known_hosts=bed.known_hosts,
            port=bed.port,
            addresses=tuple(h.address for h in bed.hosts),
        )
        self.watch = SshdWatch(bed)

    def stop_bed(self) -> None:
        """Stop the bed."""
        if self.bed is not None:
            self.bed.stop()  # type: ignore[attr-defined]
            self.bed = None

    # invocations

    def wanted(self, tool: str) -> bool:
        """Whether ``tool`` is selected and installed."""
        peer = {"ansible-tuned": "ansible"}.get(tool, tool)
        return tool in self.s.tools and peer not in self.skipped

    def remote_invocations(self, work: Path, n_hosts: int, commands: list[str]) -> dict[str, Invocation]:
        """Every remote tool's inputs for ``commands`` on ``n_hosts`` hosts."""
        assert self.target is not None
        t = self.target
        out: dict[str, Invocation] = {}
        if self.wanted("nexus"):
            out["nexus"] = nexus.remote(work, t, n_hosts, commands)
        if self.wanted("fabric"):
            out["fabric"] = fabric.remote(work, t, n_hosts, commands, self.peers["fabric"].python)
        if self.wanted("pyinfra"):
            out["pyinfra"] = pyinfra.remote(work, t, n_hosts, commands, self.peers["pyinfra"].script("pyinfra"))
        playbook = self.peers["ansible"].script("ansible-playbook") if "ansible" in self.peers else ""
        if self.wanted("ansible"):
            out["ansible"] = ansible.remote(work, t, n_hosts, commands, playbook, tuned=False)
        if self.wanted("ansible-tuned"):
            out["ansible-tuned"] = ansible.remote(work, t, n_hosts, commands, playbook, tuned=True)
        if self.wanted("ssh-loop"):
            out["ssh-loop"] = shell.remote(work, t, n_hosts, commands)
        if self.wanted("ssh-joined") and len(commands) > 1:
            out["ssh-joined"] = shell.joined(work, t, n_hosts, commands)
        return out

    def case(self, key: str, title: str, **params: object) -> Case:
        """A new case, kept."""
        c = Case(key, title, params)
        self.cases.append(c)
        return c

    def remote_case(self, key: str, title: str, n_hosts: int, commands: list[str], runs: int) -> Case:
        """Measure the remote tools on one size."""
        log(f"{key}: {title} ({n_hosts} hosts x {len(commands)} commands, {runs} runs)")
        c = self.case(key, title, hosts=n_hosts, commands=len(commands))
        invs = self.remote_invocations(WORK / key.replace("@", "-"), n_hosts, commands)
        run_rounds(c, invs, self.watch, runs, self.versions)
        return c

    # workloads

    def w1(self) -> None:
        """W1: N hosts x echo hello."""
        self.remote_case("W1", WORKLOADS["W1"].replace("N hosts", f"{self.s.w1_hosts} hosts"),
                         self.s.w1_hosts, ["echo hello"], self.s.runs)  # fmt: skip

    def w2_w7(self) -> None:
        """W2 (cold) and W7 (right after) from the same pairs of runs."""
        n, k = self.s.w2_shape
        commands = [f"echo hello {i}" for i in range(k)]
        log(f"W2/W7: {n} hosts x {k} commands, each cold run followed by a second one ({self.s.runs} runs)")
        w2 = self.case("W2", WORKLOADS["W2"].replace("10 hosts x 50", f"{n} hosts x {k}"), hosts=n, commands=k)
        w7 = self.case("W7", WORKLOADS["W7"], hosts=n, commands=k)
        invs = self.remote_invocations(WORK / "W2", n, commands)
        run_rounds(w2, invs, self.watch, self.s.runs, self.versions, second=w7)
        if "W2" not in self.s.only:
            self.cases.remove(w2)
        if "W7" not in self.s.only:
            self.cases.remove(w7)

    def w8(self) -> None:
        """W8: one ad-hoc command on N hosts, as each tool's own ad-hoc command runs it."""
        n = self.s.w1_hosts
        assert self.target is not None
        title = WORKLOADS["W8"].replace("N hosts", f"{n} hosts")
        log(f"W8: {title} ({self.s.runs} runs)")
        c = self.case("W8", title, hosts=n, commands=1)
        work, t, cmd = WORK / "W8", self.target, "echo hello"
        invs: dict[str, Invocation] = {}
        if self.wanted("nexus"):
            invs["nexus"] = nexus.exec_adhoc(work, t, n, cmd)
        if self.wanted("pyinfra"):
            invs["pyinfra"] = pyinfra.exec_adhoc(work, t, n, cmd, self.peers["pyinfra"].script("pyinfra"))
        playbook = self.peers["ansible"].script("ansible-playbook") if "ansible" in self.peers else ""
        for name, tuned in (("ansible", False), ("ansible-tuned", True)):
            if self.wanted(name):
                invs[name] = ansible.exec_adhoc(work, t, n, cmd, playbook, tuned=tuned)
        run_rounds(c, invs, self.watch, self.s.runs, self.versions)

    def w_files(self, key: str) -> None:
        """W9 (one 10 MB file) or W10 (1,000 small files) to 10 hosts; W9R/W10R: the run right after."""
        from bench.workloads import files

        assert self.target is not None
        n, t, tree = min(10, self.s.hosts_max), self.target, key == "W10"
        big, folder = files.make_sources(WORK / "sources")
        source = folder if tree else big
        log(f"{key}/{key}R: {WORKLOADS[key]} ({self.s.runs} runs, each followed by a run with nothing changed)")
        first = self.case(key, WORKLOADS[key], hosts=n, files=1000 if tree else 1)
        again = self.case(key + "R", WORKLOADS[key + "R"], hosts=n, files=1000 if tree else 1)
        work = WORK / key
        invs: dict[str, Invocation] = {}
        if self.wanted("nexus"):
            invs["nexus"] = files.nexus_files(work, t, n, source, tree)
        if self.wanted("pyinfra"):
            invs["pyinfra"] = files.pyinfra_files(work, t, n, source, tree, self.peers["pyinfra"].script("pyinfra"))
        playbook = self.peers["ansible"].script("ansible-playbook") if "ansible" in self.peers else ""
        for name, tuned in (("ansible", False), ("ansible-tuned", True)):
            if self.wanted(name):
                invs[name] = files.ansible_files(work, t, n, source, tree, playbook, tuned=tuned)
        if self.wanted("rsync") and peers_mod.ensure_rsync():
            invs["rsync"] = files.rsync_files(work, t, n, source, tree)
        run_rounds(first, invs, self.watch, self.s.runs, self.versions, second=again)
        if key not in self.s.only:
            self.cases.remove(first)
        if key + "R" not in self.s.only:
            self.cases.remove(again)

    def w3(self) -> None:
        """W3: one host, one command."""
        self.remote_case("W3", WORKLOADS["W3"], 1, ["echo hello"], self.s.runs_cheap)

    def w4(self) -> None:
        """W4: the sweep (reusing W3 for 1 host and W1 for its host count when they ran)."""
        for n in self.s.sweep:
            reuse = next(
                (c for c in self.cases if c.key in ("W1", "W3") and c.params.get("hosts") == n),
                None,
            )
            if reuse is not None:
                log(f"W4@{n}: taken from {reuse.key} (same size, same run)")
                c = dataclasses.replace(reuse, key=f"W4@{n}", title=f"sweep: {n} hosts x 1 command (= {reuse.key})")
                self.cases.append(c)
                continue
            runs = self.s.runs_cheap if n <= 10 else self.s.runs
            self.remote_case(f"W4@{n}", f"sweep: {n} hosts x 1 command", n, ["echo hello"], runs)

    def w5(self) -> None:
        """W5: local diamond DAG against make -j and invoke."""
        jobs = 10
        log(f"W5: 200-task diamond DAG, {jobs} at once ({self.s.runs_cheap} runs)")
        c = self.case("W5", WORKLOADS["W5"], tasks=200, jobs=jobs)
        work = WORK / "W5"
        invs: dict[str, Invocation] = {}
        if self.wanted("nexus"):
            invs["nexus"] = nexus.local_dag(work, 200, jobs)
        if self.wanted("make"):
            invs["make"] = make.local_dag(work, 200, jobs)
        if self.wanted("invoke"):
            invs["invoke"] = invoke.local_dag(work, 200, self.peers["invoke"].script("invoke"))
        run_rounds(c, invs, None, self.s.runs_cheap, self.versions)

    def w6(self) -> None:
        """W6: validate a 1,000-line nexusfile; dry-run plan of 500 tasks x 100 commands."""
        from bench.core import big_nexusfile, wide_nexusfile

        work = WORK / "W6"
        work.mkdir(parents=True, exist_ok=True)
        big = work / "big"
        big.mkdir(exist_ok=True)
        (big / "nexusfile.py").write_text(big_nexusfile(1000))
        wide = work / "wide"
        wide.mkdir(exist_ok=True)
        (wide / "nexusfile.py").write_text(wide_nexusfile(500, 100))
        cli = nexus.nexus_cmd()
        log(f"W6: validate 1,000 lines; dry-run plan 500x100 ({self.s.runs_cheap} runs)")
        c = self.case("W6 validate", "nexus validate, 1,000-line nexusfile (CLI, start-up included)", lines=1000)
        invs = {"nexus": Invocation("nexus", [*cli, "validate"], str(big), env={"NO_COLOR": "1"})}
        run_rounds(c, invs, None, self.s.runs_cheap, self.versions)
        c = self.case("W6 plan", "dry-run plan, 500 tasks x 100 commands (CLI, JSON)", tasks=500, commands=100)
        invs = {
            "nexus": Invocation(
                "nexus", [*cli, "run", "t499", "t498", "-n", "--format", "json"], str(wide), env={"NO_COLOR": "1"}
            )
        }
        if self.wanted("make"):
            invs["make -n"] = make.dry_run(work, 500, 100)
        run_rounds(c, invs, None, self.s.runs_cheap, self.versions)
        # In-process figures (what the nexus-core targets are about), in a child interpreter
        # of the same Python so that nothing here is already imported or cached.
        code = (
            "import sys, time, json\n"
            "from nexus_core.loader import load_project\n"
            "from nexus_core.plan import build_plan\n"
            "from nexus_core.plugins import builtin_registry\n"
            "reg = builtin_registry()\n"
            "out = {}\n"
            "for key, path, n in (('validate', sys.argv[1], 7), ('plan', sys.argv[2], 3)):\n"
            "    build_plan(load_project(path), reg)\n"
            "    t = []\n"
            "    for _ in range(n):\n"
            "        s = time.perf_counter(); build_plan(load_project(path), reg); t.append(time.perf_counter() - s)\n"
            "    out[key] = sorted(t)\n"
            "print(json.dumps(out))\n"
        )
        proc = subprocess.run(
            [nexus_python(), "-c", code, str(big / "nexusfile.py"), str(wide / "nexusfile.py")],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=str(work),
        )
        if proc.returncode == 0:
            data = json.loads(proc.stdout)
            for key, title in (
                ("validate", "load+validate 1,000-line nexusfile (in-process)"),
                ("plan", "plan 500 tasks x 100 commands (in-process)"),
            ):
                c = self.case(f"W6 {key} in-process", title, in_process=True)
                r = ToolResult("nexus", self.nexus_version)
                r.samples = [Sample(t, 0.0, 0.0, 0.0, 0.0) for t in data[key]]
                c.tools["nexus"] = r
        else:
            log(f"W6 in-process measurement failed: {_tail(proc.stderr)}")

    def profile(self) -> None:
        """py-spy profiles of Nexus on W1 (SVG flame graph + collapsed stacks summary)."""
        spy = self.peers.get("tools")
        if spy is None or not spy.ok:
            log("profile: py-spy not installed (tools venv); skipped")
            return
        assert self.target is not None
        n = self.s.w1_hosts
        inv = nexus.remote(WORK / "profile", self.target, n, ["echo hello"])
        RESULTS.mkdir(exist_ok=True)
        for fmt, out in (("flamegraph", RESULTS / "profile-W1.svg"), ("raw", WORK / "profile-W1.txt")):
            argv = [spy.script("py-spy"), "record", "-r", "250", "--subprocesses", "-f", fmt, "-o", str(out)]
            argv += ["--", *inv.argv]
            proc = subprocess.run(argv, cwd=inv.cwd, env=inv.full_env(), capture_output=True, text=True, timeout=300)
            if proc.returncode != 0:
                log(f"profile: py-spy failed ({proc.returncode}): {_tail(proc.stderr)}")
                return
        summary = summarise_profile(WORK / "profile-W1.txt")
        timelines = []
        for n_hosts in sorted({1, n}):
            tl_inv = nexus.remote(WORK / "timeline", self.target, n_hosts, ["echo hello"])
            timelines.append(event_timeline(tl_inv))
        (RESULTS / "profile-W1.txt").write_text("\n".join(timelines) + "\n" + summary)
        log(f"profile written: {RESULTS / 'profile-W1.svg'}, {RESULTS / 'profile-W1.txt'}")

    def run(self) -> None:
        """Everything selected, then the reports."""
        started = time.time()
        self.install_peers()
        for name, why in self.skipped.items():
            log(f"peer {name} SKIPPED: {why}")
        remote = [w for w in SSH_WORKLOADS if w in self.s.only]
        try:
            if remote or self.s.profile:
                self.start_bed()
            if "W3" in self.s.only:
                self.w3()
            if "W1" in self.s.only:
                self.w1()
            if "W2" in self.s.only or "W7" in self.s.only:
                self.w2_w7()
            if "W4" in self.s.only:
                self.w4()
            if "W8" in self.s.only:
                self.w8()
            for key in ("W9", "W10"):
                if key in self.s.only or key + "R" in self.s.only:
                    self.w_files(key)
            if self.s.profile:
                self.profile()
        finally:
            self.stop_bed()
        if "W5" in self.s.only:
            self.w5()
        if "W6" in self.s.only:
            self.w6()
        self.write(time.time() - started)

    # reports

    def write(self, elapsed: float) -> None:
        """peers.json, peers.md and sweep.png under bench/results/."""
        RESULTS.mkdir(exist_ok=True)
        meta = {
            "when": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
            "python": sys.version.split()[0],
            "cpus": os.cpu_count(),
            "quick": self.s.quick,
            "runs": self.s.runs,
            "runs_cheap": self.s.runs_cheap,
            "journaled": self.s.journaled,
            "elapsed_s": round(elapsed, 1),
            "versions": self.versions,
            "skipped": self.skipped,
            "bed_port": self.s.port,
        }
        data = {"meta": meta, "cases": {c.key: c.as_json() for c in self.cases}}
        # --quick writes beside the full results, never over them.
        suffix = "-quick" if self.s.quick else ""
        stem = self.s.out
        (RESULTS / f"{stem}{suffix}.json").write_text(json.dumps(data, indent=2) + "\n")
        md = render_markdown(data)
        (RESULTS / f"{stem}{suffix}.md").write_text(md)
        print(md)
        if any(key.startswith("W4") for key in data["cases"]):
            plot(RESULTS / f"{stem}{suffix}.json", RESULTS / f"sweep{suffix}.png", self.peers.get("tools"))


# --- rendering -------------------------------------------------------------------------------

TARGETS_NOTE = """\
Targets (the issue): Nexus/peer wall ratio <= 1.0 against every peer on W1-W4 and W7, <= 0.5
against Ansible with its defaults; <= 1.2 against plain Fabric; peak RSS < 200 MB at 100
hosts; W5 <= 2x `make -j`; W6: validate < 0.1 s and plan < 1 s in-process (nexus-core issue).
A ratio below 1 means Nexus was faster. Differences under ~20 % are noise on this machine.
"""


def _fmt(r: dict[str, float] | None, digits: int = 2) -> str:
    if not r:
        return "-"
    return f"{r['median']:.{digits}f} ({r['min']:.{digits}f}-{r['max']:.{digits}f})"


def render_markdown(data: dict) -> str:  # type: ignore[type-arg]
    """The human report."""
    meta = data["meta"]
    lines = [
        "# Nexus against its peers",
        "",
        f"{meta['when']}; Python {meta['python']}, {meta['cpus']} CPUs shared by the tools and every sshd; "
        f"{'QUICK mode, ' if meta['quick'] else ''}"
        f"{meta['runs']} rounds per remote workload ({meta['runs_cheap']} for cheap ones) after a warm-up; "
        f"{meta['elapsed_s']:.0f} s in all."
        + (" The hosts' homes on a journaled ext4 (`--journaled`)." if meta.get("journaled") else ""),
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items() if v and k != "ssh") + ".",
        "",
    ]
    if meta["skipped"]:
        lines += ["Skipped peers: " + "; ".join(f"{k}: {v}" for k, v in meta["skipped"].items()), ""]
    lines += [TARGETS_NOTE, "Columns: median (min-max) over the rounds. CPU = user+sys of the tool's process tree "
              "(what it waited for); RSS = largest single process (ru_maxrss); tree RSS = summed RSS of the tool's "
              "processes, sampled every 0.1 s; sshd CPU = server-side CPU of the sessions that ended during the run. "
              "Ratio = Nexus wall / tool wall, taken round by round.", ""]  # fmt: skip
    for key, case in data["cases"].items():
        lines += [f"## {key}: {case['title']}", ""]
        if case.get("load_avg_before_after"):
            lines += [f"Load average before/after: {' / '.join(f'{x:.2f}' for x in case['load_avg_before_after'])}", ""]
        lines += [
            "| tool | wall s | CPU s | RSS MB | tree RSS MB | sshd CPU s | Nexus/tool wall | note |",
            "|---|---|---|---|---|---|---|---|",
        ]
        ratios = case["ratios"]
        for tool, r in case["tools"].items():
            if "wall" not in r:
                why = r.get("skipped") or (r.get("error", "").splitlines() or ["no result"])[0]
                lines.append(f"| {tool} | FAILED | | | | | | {why} |")
                continue
            is_local = "W5" in key or "W6" in key
            inproc = bool(case["params"].get("in_process"))
            lines.append(
                f"| {tool} | {_fmt(r['wall'], 3 if is_local else 2)} | {'-' if inproc else _fmt(r['cpu'])} | "
                f"{'-' if inproc else _fmt(r['rss_mb'], 0)} | {'-' if inproc else _fmt(r['tree_rss_mb'], 0)} | "
                f"{'-' if is_local else _fmt(r['server_cpu'])} | "
                f"{_fmt(ratios.get(tool)) if tool != case['base'] else '1'} | {r.get('note', '')} |"
            )
        errors = [(t, r["error"]) for t, r in case["tools"].items() if r.get("error")]
        for tool, err in errors:
            lines += ["", f"{tool} error:", "", "```", _tail(err, 20), "```"]
        lines.append("")
    lines += target_lines(data)
    return "\n".join(lines) + "\n"


def target_lines(data: dict) -> list[str]:  # type: ignore[type-arg]
    """Each target with the figure behind it (informational: timings never fail a test)."""
    out = ["## Targets", "", "| target | figure | met |", "|---|---|---|"]
    cases = data["cases"]
    for key, case in cases.items():
        if not key.startswith(SSH_WORKLOADS) or "(= W" in case["title"]:
            continue  # (a sweep point that is W1's or W3's own run is listed there)
        for tool, r in case["ratios"].items():
            if tool == "ssh-joined":  # a floor, not a peer (see bench/workloads/shell.py)
                out.append(f"| {key} vs ssh-joined (floor, informational) | {r['median']:.2f} | - |")
                continue
            limit = 1.2 if tool == "fabric" else 1.5 if (key == "W10" and tool == "rsync") else 1.0
            out.append(
                f"| {key} vs {tool} <= {limit} | {r['median']:.2f} | {'yes' if r['median'] <= limit else 'NO'} |"
            )
            if tool == "ansible":
                out.append(f"| {key} vs ansible (defaults) <= 0.5 | {r['median']:.2f} | "
                           f"{'yes' if r['median'] <= 0.5 else 'NO'} |")  # fmt: skip
    for key in ("W9", "W10"):  # the issue: a re-run with nothing changed at least 5x faster than the first run
        first = cases.get(key, {}).get("tools", {}).get("nexus", {})
        again = cases.get(key + "R", {}).get("tools", {}).get("nexus", {})
        if "wall" in first and "wall" in again and again["wall"]["median"] > 0:
            r = first["wall"]["median"] / again["wall"]["median"]
            out.append(f"| {key} Nexus first run / re-run >= 5 | {r:.2f} | {'yes' if r >= 5 else 'NO'} |")
    for key, case in cases.items():
        nx = case["tools"].get("nexus", {})
        if case["params"].get("hosts") == 100 and "rss_mb" in nx:
            peak = nx["rss_mb"]["max"]
            out.append(
                f"| {key} Nexus peak RSS at 100 hosts < 200 MB | {peak:.0f} MB | {'yes' if peak < 200 else 'NO'} |"
            )
    if "W5" in cases and "make" in cases["W5"]["ratios"]:
        r = cases["W5"]["ratios"]["make"]["median"]
        out.append(f"| W5 vs make -j <= 2.0 | {r:.2f} | {'yes' if r <= 2 else 'NO'} |")
    for key, limit in (("W6 validate in-process", 0.1), ("W6 plan in-process", 1.0)):
        nx = cases.get(key, {}).get("tools", {}).get("nexus", {})
        if "wall" in nx:
            m = nx["wall"]["median"]
            out.append(f"| {key} < {limit} s | {m:.3f} s | {'yes' if m < limit else 'NO'} |")
    return [*out, ""]


def event_timeline(inv: Invocation) -> str:
    """Where a Nexus run's wall time goes, from its own JSON events (one untimed run).

    Each event kind: how many, and the first/last time it was seen, in seconds after the
    process was spawned; then the process exit. Start-up = spawn -> first event.
    """
    argv = [a for a in inv.argv if a != "-q"] + ["--format", "json"]
    spawn = time.time()
    proc = subprocess.run(argv, cwd=inv.cwd, env=inv.full_env(), capture_output=True, text=True, timeout=RUN_TIMEOUT)
    end = time.time()
    kinds: dict[str, list[float]] = {}
    durations: dict[str, list[float]] = {}
    for line in proc.stdout.splitlines():
        with contextlib.suppress(ValueError):
            ev = json.loads(line)
            kinds.setdefault(ev["event"], []).append(float(ev["ts"]) - spawn)
            if isinstance(ev.get("duration"), int | float):
                durations.setdefault(ev["event"], []).append(float(ev["duration"]))
    hosts = len(inv.expect_hosts)
    out = [f"## Timeline of one `nexus run --format json` on {hosts} host(s) x 1 command (exit {proc.returncode})", ""]
    out.append(f"{'event':28} {'count':>5} {'first s':>8} {'last s':>8}  durations (median / max)")
    for kind, ts in sorted(kinds.items(), key=lambda kv: min(kv[1])):
        d = durations.get(kind)
        dur = f"{statistics.median(d):.3f} / {max(d):.3f}" if d else ""
        out.append(f"{kind:28} {len(ts):5d} {min(ts):8.3f} {max(ts):8.3f}  {dur}")
    out += [f"{'process exit':28} {'':5} {end - spawn:8.3f}", ""]
    return "\n".join(out)


def summarise_profile(raw: Path, top: int = 25) -> str:
    """Top functions (self and inclusive share of samples) from py-spy's collapsed stacks."""
    self_count: dict[str, int] = {}
    incl: dict[str, int] = {}
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        count = int(n)
        frames = stack.split(";")
        total += count
        leaf = frames[-1]
        self_count[leaf] = self_count.get(leaf, 0) + count
        for f in set(frames):
            incl[f] = incl.get(f, 0) + count
    if not total:
        return "no samples\n"
    out = [f"## py-spy: {total} samples over every thread (py-spy leaves out threads it sees idle)", "", "### self", ""]
    for f, n in sorted(self_count.items(), key=lambda kv: -kv[1])[:top]:
        out.append(f"{100 * n / total:5.1f}%  {f}")
    out += ["", "### inclusive", ""]
    for f, n in sorted(incl.items(), key=lambda kv: -kv[1])[:top]:
        out.append(f"{100 * n / total:5.1f}%  {f}")
    return "\n".join(out) + "\n"


def nexus_python() -> str:
    """The interpreter of the Nexus under test (next to its CLI), else this one."""
    cli = Path(nexus.nexus_cmd()[0])
    for name in ("python", "python3"):
        if (cli.parent / name).exists() and cli.name == "nexus":
            return str(cli.parent / name)
    return sys.executable


def plot(json_path: Path, png: Path, tools_peer: peers_mod.Peer | None) -> None:
    """sweep.png from the W4 cases, drawn by matplotlib in the tools venv."""
    if tools_peer is None or not tools_peer.ok:
        log("plot: matplotlib not installed (tools venv); no sweep.png")
        return
    proc = subprocess.run(
        [tools_peer.python, str(HERE / "plot.py"), str(json_path), str(png)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if proc.returncode != 0:
        log(f"plot failed: {_tail(proc.stderr)}")
    elif proc.stdout.strip():
        log(proc.stdout.strip())


# --- command line ----------------------------------------------------------------------------


def parse(argv: list[str]) -> Settings:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small sizes (<= 20 hosts, 10 commands), 2 rounds")
    p.add_argument("--only", default="", help="comma-separated workloads, e.g. W1,W5 (default: all)")
    p.add_argument("--hosts-max", type=int, default=0, help="cap every host count (default 200; --quick 20)")
    p.add_argument("--runs", type=int, default=0, help="rounds per remote workload (default 3; --quick 2)")
    p.add_argument("--tools", default="", help="comma-separated tools (default: all)")
    p.add_argument("--port", type=int, default=2299, help="port of the bed's sshd (default 2299)")
    p.add_argument("--profile", action="store_true", help="also record a py-spy profile of Nexus on W1")
    p.add_argument(
        "--nexus",
        default="installed",
        help="which Nexus: 'installed' (the nexus CLI next to this Python, default), 'snapshot' (a non-editable "
        "copy of the working tree, immune to edits made during the run), 'head' (git HEAD), or a path to a nexus CLI",
    )
    p.add_argument(
        "--journaled",
        action="store_true",
        help="the hosts' homes and the file workloads' destinations on an ext4 with a journal (a loop device"
        " made for the sitting), as on a server: this VM's root ext4 has none and discards on every delete,"
        " which makes the first run after a clean-up slow (bench/ab.py)",
    )
    p.add_argument("--out", default="peers", metavar="STEM",
                   help="write results/STEM.{md,json} (default peers), e.g. --only W8 --out exec")  # fmt: skip
    a = p.parse_args(argv)
    only = [w.strip().upper() for w in a.only.split(",") if w.strip()] or list(WORKLOADS)
    bad = [w for w in only if w not in WORKLOADS]
    if bad:
        p.error(f"unknown workload(s) {', '.join(bad)}; choose from {', '.join(WORKLOADS)}")
    tools = [t.strip() for t in a.tools.split(",") if t.strip()] or [*REMOTE_TOOLS, "make", "invoke"]
    if "nexus" not in tools:
        tools.insert(0, "nexus")
    hosts_max = a.hosts_max or (20 if a.quick else 200)
    if not 1 <= hosts_max <= 200:
        p.error("--hosts-max must be within 1..200")
    runs = a.runs or (2 if a.quick else 3)
    return Settings(
        quick=a.quick,
        only=only,
        hosts_max=hosts_max,
        runs=runs,
        runs_cheap=a.runs or (2 if a.quick else 5),
        port=a.port,
        profile=a.profile,
        tools=tools,
        nexus=a.nexus,
        out=a.out,
        journaled=a.journaled,
    )


def compile_sources(*plugins: str) -> None:
    """Write the bytecode of an editable Nexus, as ``pip install`` does for the peers.

    With ``PYTHONDONTWRITEBYTECODE`` set (as on CI machines) an edited module would
    otherwise be compiled again by every single run that is timed. ``plugins``: more
    packages under ``plugins/`` to compile (``"nexus_tailscale"``), for benchmarks that time them.
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    dirs = [str(ROOT / "nexus_core"), str(ROOT / "plugins" / "nexus_ssh" / "nexus_ssh")]
    dirs += [str(ROOT / "plugins" / name / name) for name in plugins]
    subprocess.run([sys.executable, "-m", "compileall", "-q", *dirs], env=env, capture_output=True, check=False)


def main() -> None:
    """Entry point."""
    settings = parse(sys.argv[1:])
    if os.geteuid() != 0 and any(w in settings.only for w in SSH_WORKLOADS):
        raise SystemExit("the SSH workloads start sshd for test users: run as root (or --only W5,W6)")
    os.chdir(ROOT)
    WORK.mkdir(parents=True, exist_ok=True)
    bench = Bench(settings)

    def on_signal(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    if settings.journaled:
        from ab import journaled  # the bench's folder is the script's: importable as is

        from bench.workloads.files import DEST_ROOT

        with journaled(extra=(DEST_ROOT,)):
            bench.run()
    else:
        bench.run()


if __name__ == "__main__":
    main()
