"""SSH pre-flight checks: connectivity, authentication, sudo, resources.

For every SSH host a plan touches, in parallel (at most ``parallel`` hosts at once, default
10), one worker:

1. **Host Connectivity**: opens a TCP connection to the SSH port (through the jump hosts or
   ProxyCommand when configured), measures the latency, reads the server's banner
   (``SSH-2.0-OpenSSH_9.2``) and closes. Nothing is authenticated on the target.
2. **SSH Authentication**: one real connection with the run's settings (identity, agent,
   ``~/.ssh/config``, host key policy). The host key is verified here, so a changed key shows
   up as a failure. ``accept_new`` is checked as ``tofu``: checks never write known_hosts.
3. **Sudo Access**, only for hosts with ``sudo=True`` / ``user=`` commands: runs
   ``sudo -n true`` (``sudo -n -u USER true``) on that connection.
4. **Disk Space**, only for hosts that files are uploaded to (``upload``, ``template``):
   ``df -Pk`` of each destination folder (its nearest existing parent) on that connection;
   a file system with less free space than the uploads to it need fails the check (the
   local files' sizes: an upload that finds its file unchanged needs less, never more).
   ``--skip-disk-check`` leaves it out.

Steps 3 and 4 execute something on the host, so ``--dry-run`` (which executes nothing on
any host) leaves them to ``nexus preflight``.

Connections (steps 1 and 2) are paced as a run's are (``ssh_connect_rate``,
``ssh_jump_concurrency``, ``ssh_connect_concurrency``: :mod:`nexus_ssh.pacing`), and a handshake
the server dropped before its banner (sshd's ``MaxStartups``) is tried again, each retry a
warning; other failures are reported at once (a check tries once).

A host that fails a step is skipped by the later steps. Results are grouped by category
for ``nexus preflight``'s output. Plus **Resources**: the open-files limit against the
number of hosts (see :mod:`nexus_ssh.limits`), shown only when it matters.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import shlex
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from nexus_core.plugin import CheckResult, PreflightCheck, shell

from nexus_ssh.errors import ConnectError, classify
from nexus_ssh.plugin import AUTH, CONNECTIVITY, DISK, RESOURCES, SUDO
from nexus_ssh.settings import DEFAULT_POOL_SIZE, ConnectSpec, Resolver, SettingsError

if TYPE_CHECKING:
    from nexus_core.plugin import Host, Plan

    from nexus_ssh.connect import Connection, Connector

DEFAULT_TIMEOUT = 5.0
DEFAULT_PARALLEL = 10
_BANNER_LIMIT = 4096


@dataclass
class _HostReport:
    connectivity: CheckResult | None = None
    auth: CheckResult | None = None
    sudo: list[CheckResult] = field(default_factory=list)
    disk: list[CheckResult] = field(default_factory=list)


def _sudo_targets(plan: Any) -> dict[tuple[str, str | None, int | None], list[str | None]]:
    """For each SSH host (name, user, port): the sudo targets its commands use (None = root)."""
    out: dict[tuple[str, str | None, int | None], list[str | None]] = {}
    for name in plan.order:
        for hp in plan.tasks[name].hosts:
            if hp.host.transport != "ssh":
                continue
            for cmd in hp.commands:
                if cmd.sudo or cmd.user:
                    targets = out.setdefault((hp.host.name, hp.host.user, hp.host.port), [])
                    if cmd.user not in targets:
                        targets.append(cmd.user)
    return out


def _upload_needs(plan: Any) -> dict[tuple[str, str | None, int | None], dict[str, int]]:
    """For each SSH host (name, user, port): the bytes each destination folder receives from
    the plan's uploads and templates (the local files' sizes; each source measured once)."""
    sizes: dict[tuple[str, bool], int] = {}
    out: dict[tuple[str, str | None, int | None], dict[str, int]] = {}
    for name in plan.order:
        for hp in plan.tasks[name].hosts:
            if hp.host.transport != "ssh":
                continue
            for op in hp.commands:
                if getattr(op, "kind", "") not in ("upload", "template"):  # a file operation (Transfer)
                    continue
                if op.kind == "template":
                    size = len(op.content or b"")
                elif (op.src, op.recursive) in sizes:
                    size = sizes[(op.src, op.recursive)]
                else:
                    size = sizes[(op.src, op.recursive)] = _local_size(op.src, op.recursive)
                into = op.recursive or op.dest.endswith("/")
                folder = (op.dest.rstrip("/") or "/") if into else (posixpath.dirname(op.dest) or ".")
                needs = out.setdefault((hp.host.name, hp.host.user, hp.host.port), {})
                needs[folder] = needs.get(folder, 0) + size
    return out


def _local_size(path: str, recursive: bool) -> int:
    """Bytes of a local file, or of the files of a folder (``recursive``); 0 when unreadable
    (the plan's own checks report a missing source)."""
    try:
        if not recursive:
            return os.path.getsize(path)
        total = 0
        for top, _dirs, files in os.walk(path):
            for f in files:
                with contextlib.suppress(OSError):
                    total += os.lstat(os.path.join(top, f)).st_size
        return total
    except OSError:
        return 0


def _df_script(folders: Sequence[str]) -> str:
    """``NXDF FOLDER<TAB>`` then ``df -Pk``'s line for the nearest existing parent of each folder."""
    return (
        f"for d in {' '.join(shlex.quote(f) for f in folders)}; do p=$d; {shell.nearest_existing('p')}; "
        'printf "NXDF %s\\t" "$d"; df -Pk -- "$p" 2>&1 | tail -n 1; done'
    )


def _mb(n: int) -> str:
    return f"{n / 1_048_576:.1f} MB" if n < 10 * 1_073_741_824 else f"{n / 1_073_741_824:.1f} GB"


def _first_line(text: str) -> tuple[str, str]:
    head, _, rest = text.partition("\n")
    return head, rest


class SshHostsCheck(PreflightCheck):
    """Connectivity, authentication and sudo for every SSH host of the plan.

    Registered as ``ssh-hosts`` by :mod:`nexus_ssh.plugin` (which never imports this module).
    """

    def run(self, plan: Plan, options: Mapping[str, Any]) -> list[CheckResult]:
        """Check every SSH host (bounded parallelism); results grouped by category."""
        hosts: list[Host] = [h for h in plan.hosts if h.transport == "ssh"]
        if not hosts:
            return []
        dry_run = bool(options.get("dry_run"))
        timeout = float(options.get("timeout") or DEFAULT_TIMEOUT)
        parallel = max(1, int(options.get("parallel") or DEFAULT_PARALLEL))
        try:
            resolver = Resolver(plan.config, {})
        except SettingsError as exc:
            return [CheckResult(CONNECTIVITY, "fail", f"SSH settings: {exc}", exit_code=2)]
        from nexus_ssh.connect import Connector

        connector = Connector(resolver, {"ssh_connect_attempts": 1, "ssh_password_prompt": not dry_run})
        sudo = {} if options.get("skip_sudo_check") else _sudo_targets(plan)
        disk = {} if options.get("skip_disk_check") else _upload_needs(plan)
        worker = _HostWorker(resolver, connector, options, timeout, dry_run)

        def check(h: Host) -> _HostReport:
            key = (h.name, h.user, h.port)
            return worker.check(h, sudo.get(key, []), {} if dry_run else disk.get(key, {}))

        with ThreadPoolExecutor(
            max_workers=min(parallel, len(hosts)), thread_name_prefix="nexus-preflight"
        ) as pool:
            reports = list(pool.map(check, hosts))
        results: list[CheckResult] = [r.connectivity for r in reports if r.connectivity is not None]
        results += [r.auth for r in reports if r.auth is not None]
        if sudo and dry_run:
            results.append(
                CheckResult(
                    SUDO,
                    "skipped",
                    "not checked: a dry run executes nothing on hosts "
                    "(`nexus preflight TASK` runs sudo -n true)",
                    blocking=False,
                )
            )
        else:
            results += [c for r in reports for c in r.sudo]
        if disk and dry_run:
            results.append(
                CheckResult(
                    DISK,
                    "skipped",
                    "not checked: a dry run executes nothing on hosts (`nexus preflight TASK` runs df)",
                    blocking=False,
                )
            )
        else:
            results += [c for r in reports for c in r.disk]
        results += _resources(plan, len(hosts))
        return results


class _HostWorker:
    """The checks for one host at a time (shared, thread-safe: no per-host state kept)."""

    def __init__(
        self,
        resolver: Resolver,
        connector: Connector,
        options: Mapping[str, Any],
        timeout: float,
        dry_run: bool,
    ) -> None:
        self.resolver = resolver
        self.connector = connector
        self.options = options
        self.timeout = timeout
        self.dry_run = dry_run

    def check(self, host: Host, sudo_targets: Sequence[str | None], needs: Mapping[str, int]) -> _HostReport:
        """Connectivity, then authentication, then sudo and disk space (``needs``: bytes by
        destination folder) for ``host`` (a failed step skips the rest)."""
        from nexus_ssh.connect import retry_warning

        report = _HostReport()
        label = host.label
        try:
            spec = self.resolver.resolve(host.name, host.user, host.port)
        except SettingsError as exc:
            report.connectivity = CheckResult(CONNECTIVITY, "fail", str(exc), host=label, exit_code=2)
            return report
        # Checks never write known_hosts: accept_new is checked as tofu (verify known keys only).
        policy = "tofu" if spec.policy == "accept_new" else spec.policy
        spec = replace(spec, connect_timeout=self.timeout, policy=policy)
        where = f"{spec.target.hostname}:{spec.target.port}"
        if not self.options.get("skip_connectivity"):
            report.connectivity = self._connectivity(spec, label, where)
            if report.connectivity.status == "fail":
                why = "skipped - host unreachable"
                report.auth = CheckResult(AUTH, "skipped", why, host=label, blocking=False)
                report.sudo = [
                    CheckResult(SUDO, "skipped", why, host=label, blocking=False) for _ in sudo_targets[:1]
                ]
                return report
        need_connection = not self.options.get("skip_auth") or ((sudo_targets or needs) and not self.dry_run)
        if not need_connection:
            return report
        t0 = time.monotonic()
        try:
            # Paced and retried as a run's connections are (ssh_connect_rate, the jump host's
            # cap); only a handshake the server dropped is tried again (see Connector.tries).
            conn = self.connector.connect(spec, on_retry=retry_warning(spec))
        except ConnectError as exc:
            head, rest = _first_line(exc.reason)
            failed = CheckResult(AUTH, "fail", head, host=label, hint=rest, exit_code=3)
            report.auth = failed
            why = "skipped - host key changed" if exc.kind == "hostkey" else "skipped - cannot log in"
            report.sudo = [
                CheckResult(SUDO, "skipped", why, host=label, blocking=False) for _ in sudo_targets[:1]
            ]
            return report
        except Exception as exc:
            err = classify(exc, spec.target)
            head, rest = _first_line(err.reason)
            report.auth = CheckResult(AUTH, "fail", head, host=label, hint=rest, exit_code=3)
            return report
        try:
            took = time.monotonic() - t0
            if not self.options.get("skip_auth"):
                via = f", via {', '.join(str(h) for h in spec.hops)}" if spec.hops else ""
                report.auth = CheckResult(
                    AUTH,
                    "ok",
                    f"{spec.target.user} accepted ({_auth_text(conn.auth)}{via})",
                    host=label,
                    duration=took,
                )
            if not self.dry_run:
                report.sudo = [self._sudo(conn, spec, label, target) for target in sudo_targets]
                if needs:
                    report.disk = self._disk(conn, label, needs)
        finally:
            conn.close()
        return report

    def _connectivity(self, spec: ConnectSpec, label: str, where: str) -> CheckResult:
        from nexus_ssh.connect import close_probe

        t0 = time.monotonic()
        try:
            stream, hops = self.connector.open_to_target(spec)  # paced; a dropped handshake is retried
        except ConnectError as exc:
            head, rest = _first_line(exc.reason)
            return CheckResult(CONNECTIVITY, "fail", head, host=label, hint=rest, exit_code=3)
        latency = time.monotonic() - t0
        try:
            banner = _read_banner(stream, self.timeout)
        except Exception as exc:
            err = classify(exc, spec.target)
            head, rest = _first_line(err.reason)
            return CheckResult(CONNECTIVITY, "fail", f"{where} {head}", host=label, hint=rest, exit_code=3)
        finally:
            close_probe(stream, hops)
        if not banner.startswith("SSH-"):
            return CheckResult(
                CONNECTIVITY,
                "fail",
                f"{where} answers, but not as an SSH server ({banner[:60]!r})",
                host=label,
                hint="- Check the port: ssh_port, user@host:port, or Port in ~/.ssh/config",
                exit_code=3,
            )
        via = (
            f", via {spec.hops[-1].hostname}"
            if spec.hops
            else ", via ProxyCommand"
            if spec.proxy_command
            else ""
        )
        name = "" if spec.target.hostname == label else f"{spec.target.hostname} "
        return CheckResult(
            CONNECTIVITY,
            "ok",
            f"{name}port {spec.target.port} open, {banner}{via}",
            host=label,
            duration=latency,
        )

    def _disk(self, conn: Connection, label: str, needs: Mapping[str, int]) -> list[CheckResult]:
        """Free space of the file systems the uploads go to, against what they need (by file system)."""
        folders = sorted(needs)
        t0 = time.monotonic()
        try:
            _code, text = _exec(conn, _df_script(folders), self.timeout, pty=False)
        except Exception as exc:
            why = f"could not read the free space: {exc}"
            return [CheckResult(DISK, "warn", why, host=label, blocking=False)]
        took = time.monotonic() - t0
        found: dict[str, tuple[int, str]] = {}  # folder -> (free bytes, mount point)
        for line in text.split("\n"):
            if not line.startswith("NXDF "):
                continue
            folder, _, df = line[5:].partition("\t")
            fields = df.split()
            if len(fields) >= 6 and fields[3].isdigit():
                found[folder] = (int(fields[3]) * 1024, fields[5])
        by_mount: dict[str, list[Any]] = {}  # mount -> [free, needed, folders]
        for folder in folders:
            if folder not in found:
                why = f"could not read the free space of {folder}"
                hint = "- is df on the host's PATH?"
                return [CheckResult(DISK, "warn", why, host=label, hint=hint, blocking=False)]
            free, mount = found[folder]
            entry = by_mount.setdefault(mount, [free, 0, []])
            entry[1] += needs[folder]
            entry[2].append(folder)
        out: list[CheckResult] = []
        for mount, (free, need, where) in by_mount.items():
            shown = ", ".join(where[:3]) + (f" (+{len(where) - 3} more)" if len(where) > 3 else "")
            if free < need:
                why = f"{_mb(free)} free on {mount}, the uploads to {shown} need {_mb(need)}"
                hint = "- free space on the host, or upload less\n- or skip the check: --skip-disk-check"
                out.append(CheckResult(DISK, "fail", why, host=label, hint=hint, duration=took, exit_code=1))
            else:
                why = f"{_mb(free)} free on {mount} (uploads: {_mb(need)})"
                out.append(CheckResult(DISK, "ok", why, host=label, duration=took))
        return out

    def _sudo(self, conn: Connection, spec: ConnectSpec, label: str, target: str | None) -> CheckResult:
        cmd = "sudo -n true" if target is None else f"sudo -n -u {shlex.quote(target)} true"
        as_who = "" if target is None else f" as {target}"
        user = spec.target.user
        try:
            code, err = _exec(conn, cmd, self.timeout, pty=False)
            if code != 0 and any(t in err for t in ("must have a tty", "a terminal is required")):
                code, err = _exec(conn, cmd, self.timeout, pty=True)
        except Exception as exc:
            return CheckResult(SUDO, "fail", f"could not run {cmd!r}: {exc}", host=label, exit_code=1)
        if code == 0:
            return CheckResult(SUDO, "ok", f"NOPASSWD confirmed{as_who}", host=label)
        said = next((line.strip() for line in err.splitlines() if line.strip()), f"exit code {code}")
        grant = f"ALL=({target or 'ALL'}) NOPASSWD: ALL"
        return CheckResult(
            SUDO,
            "fail",
            f"Sudo not available for user '{user}'{as_who}: \"{said}\"",
            host=label,
            hint=(
                f'- Add to sudoers: echo "{user} {grant}" | sudo tee /etc/sudoers.d/{user}\n'
                "- Or use --skip-sudo-check if sudo is not required"
            ),
            exit_code=1,
        )


def _auth_text(auth: str) -> str:
    if auth.startswith("publickey "):
        return "key: " + auth.removeprefix("publickey ")
    return {"agent": "key from ssh-agent", "password": "password"}.get(auth, auth)


def _read_banner(stream: Any, timeout: float) -> str:
    """The server's identification line (lines before it are allowed by RFC 4253)."""
    with contextlib.suppress(Exception):
        stream.settimeout(timeout)
    deadline = time.monotonic() + timeout
    buf = b""
    while len(buf) < _BANNER_LIMIT and time.monotonic() < deadline:
        chunk: bytes = stream.recv(256)
        if not chunk:
            break
        buf += chunk
        for line in buf.split(b"\n")[:-1]:
            text: str = line.decode("utf-8", "replace").strip()
            if text.startswith("SSH-"):
                with contextlib.suppress(Exception):  # be polite: identify, so sshd logs no oddity
                    stream.send(b"SSH-2.0-nexus_preflight\r\n")
                return text
    if not buf:
        raise EOFError("the server closed the connection without a banner")
    return buf.decode("utf-8", "replace").strip()


def _exec(conn: Connection, cmd: str, timeout: float, pty: bool) -> tuple[int, str]:
    from nexus_ssh.wake import waker

    chan = conn.transport.open_session(timeout=timeout)
    try:
        if pty:
            chan.get_pty(term="dumb")
        chan.exec_command(cmd)
        deadline = time.monotonic() + timeout
        err = b""
        wake = waker(chan)  # not select(): see nexus_ssh.wake
        while not chan.exit_status_ready():
            if time.monotonic() > deadline:
                raise TimeoutError(f"no answer within {timeout:g}s")
            wake.wait(0.1)
            while chan.recv_stderr_ready():
                err += chan.recv_stderr(4096)
            while chan.recv_ready():
                err += chan.recv(4096)  # with a pty, errors come on stdout
        while chan.recv_stderr_ready():
            err += chan.recv_stderr(4096)
        return chan.recv_exit_status(), err.decode("utf-8", "replace")
    finally:
        chan.close()


def _resources(plan: Any, n_hosts: int) -> list[CheckResult]:
    """The open-files limit against this plan's SSH hosts (a result only when it matters)."""
    from nexus_ssh.limits import ensure_fd_limit, fds_needed

    cfg = plan.config
    pool = int(cfg.get("ssh_pool_size") or DEFAULT_POOL_SIZE)
    limit = int(cfg.get("parallel_limit") or 10)
    concurrency = int(cfg.get("forks") or limit) * limit
    need = fds_needed(n_hosts, pool, concurrency, tasks_at_once=limit)
    report = ensure_fd_limit(need)
    if not report.enough:
        return [
            CheckResult(
                RESOURCES,
                "warn",
                f"open files limit {report.soft} is below the ~{need} this plan may need",
                hint=report.warning(n_hosts, pool),
                blocking=False,
            )
        ]
    if report.raised:
        return [
            CheckResult(
                RESOURCES,
                "ok",
                f"open files limit raised from {report.soft_before} to {report.soft} for {n_hosts} hosts",
            )
        ]
    return []
