"""``nexus agent``: the cluster's certificates, and the agents of this machine.

``init`` and ``cert`` make certificates; ``start`` runs an agent (in the background unless
``--foreground``), ``stop`` ends agents started here, ``status`` lists the cluster's
agents (tags, load, running tasks), ``drain`` stops an agent taking new commands, and
``systemd-unit`` prints a unit file that restarts an agent when it crashes. Errors are one
message in Nexus's shape with an exit code: 2 for a configuration mistake, 3 when the
cluster cannot be reached, 1 for anything else.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from typing import Any, NoReturn

import click

#: Seconds ``nexus agent start`` waits for a background agent to be ready.
START_TIMEOUT = 60.0
#: Seconds ``nexus agent stop`` waits for an agent to end after SIGTERM (then SIGKILL).
STOP_TIMEOUT = 15.0


def _fail(code: int, headline: str, context: list[str] | None = None, suggestions: list[str] | None = None) -> NoReturn:
    from nexus_core.plugin import fail

    fail(code, headline, context or [], suggestions or [])


def _cert_error(exc: Any) -> NoReturn:
    _fail(2, str(exc), [], [exc.hint] if exc.hint else [])


@click.group(name="agent")
def agent() -> None:
    """Agents: machines that join a cluster (mutual TLS, on Dask) and run tasks."""


@agent.command()
@click.option("--name", default=None, help="This machine's certificate name (default: its host name).")
@click.option("--force", is_flag=True, help="Replace an existing CA (every agent then needs a new certificate).")
def init(name: str | None, force: bool) -> None:
    """Create the cluster's CA and this machine's certificate (in $XDG_CONFIG_HOME/nexus/agent)."""
    from nexus_agent import certs

    try:
        folder, files = certs.init(force=force, name=name)
    except certs.CertError as exc:
        _cert_error(exc)
    click.echo(f"created the cluster CA in {folder}")
    click.echo(f"certificate for {os.path.basename(files.cert)[:-4]}: {files.cert}")
    click.echo("next: `nexus agent start --coordinator`, and `nexus agent cert NAME` for each other machine")


@agent.command()
@click.argument("name")
def cert(name: str) -> None:
    """Issue a certificate for the machine NAME (copy ca.pem, NAME.pem and NAME-key.pem there)."""
    from nexus_agent import certs

    try:
        files = certs.issue(name)
    except certs.CertError as exc:
        _cert_error(exc)
    click.echo(f"issued {files.cert} and {files.key}")
    click.echo(
        f"copy them with {files.ca} into the agent folder of {name} ($XDG_CONFIG_HOME/nexus/agent), then run "
        f"`nexus agent start --name {name} --join COORDINATOR:7400` there"
    )


#: Commands one agent may run at once, at most (a larger count is a typo: Dask failed on it
#: with an OverflowError).
MAX_SLOTS = 10_000

#: The keys of ``--config FILE``: their TOML types and what they must be.
CONFIG_KEYS: dict[str, tuple[tuple[type, ...], str]] = {
    "name": ((str,), "a name (a string)"),
    "tags": ((list, str), 'a list of tags (["arm", "home"]) or "arm,home"'),
    "port": ((int,), "a port number (1 to 65535)"),
    "host": ((str,), "an address to listen on (a string)"),
    "join": ((str,), 'the coordinator\'s "HOST:PORT"'),
    "coordinator": ((bool,), "true or false"),
    "max_concurrent_tasks": ((int,), "a whole number of at least 1"),
    "max_memory_percent": ((int,), "a whole number from 1 to 100"),
    "agent_timeout": ((int, float), "a number of seconds above 0"),
}


def _config_value_ok(key: str, value: Any) -> bool:
    """True when ``value`` has the TOML type (and range) ``CONFIG_KEYS`` gives ``key``."""
    kinds = CONFIG_KEYS[key][0]
    if isinstance(value, bool) != (bool in kinds) or not isinstance(value, kinds):
        return False  # true/false where a number goes, or the other way round
    if key == "tags" and isinstance(value, list):
        return all(isinstance(t, str) for t in value)
    if key == "port":
        return isinstance(value, int) and 0 < value < 65536
    if key == "max_memory_percent":
        return isinstance(value, int) and 1 <= value <= 100
    return True


def _settings(
    config: str | None,
    name: str | None,
    tags: str | None,
    join: str | None,
    port: int | None,
    host: str | None,
    coordinator: bool,
    no_agent: bool,
    max_tasks: int | None,
    max_memory: int | None,
    cert_name: str | None,
    agent_timeout: float | None = None,
) -> Any:
    from nexus_agent import certs
    from nexus_agent.daemon import AGENT_TIMEOUT, Settings

    data: dict[str, Any] = {}
    if config:
        import tomllib

        try:
            with open(config, "rb") as fh:
                raw = tomllib.load(fh)
        except (OSError, tomllib.TOMLDecodeError) as exc:
            _fail(2, f"cannot read the agent configuration {config}: {exc}", [], ["fix the TOML file"])
        raw = raw.get("agent", raw)
        for key, value in raw.items():
            if key not in CONFIG_KEYS:
                _fail(2, f"{config}: unknown key {key!r}", [], ["keys: " + ", ".join(sorted(CONFIG_KEYS))])
            if not _config_value_ok(key, value):
                _fail(2, f"{config}: {key} must be {CONFIG_KEYS[key][1]}, not {value!r}", [], ["fix the TOML file"])
            data[key] = value
        if isinstance(data.get("tags"), str):
            data["tags"] = [t for t in data["tags"].split(",") if t]
    given = {
        "name": name,
        "tags": [t.strip() for t in tags.split(",") if t.strip()] if tags is not None else None,
        "join": join,
        "port": port,
        "host": host,
        "max_concurrent_tasks": max_tasks,
        "max_memory_percent": max_memory,
        "agent_timeout": agent_timeout,
    }
    data.update({k: v for k, v in given.items() if v is not None})
    if coordinator:
        data["coordinator"] = True
    data["agent"] = not no_agent
    data.setdefault("name", certs.default_name())
    data["cert_name"] = cert_name or ""
    try:
        certs.check_name(str(data["name"]))
    except certs.CertError as exc:
        _cert_error(exc)
    if not data.get("coordinator") and not data.get("join"):
        _fail(
            2,
            "an agent needs a coordinator to join",
            [],
            [
                "pass --join HOST:PORT (the coordinator's address)",
                "or start the coordinator here with --coordinator",
            ],
        )
    if data.get("join"):
        from nexus_agent import cluster

        written = str(data["join"])
        try:
            full = cluster.address({"cluster": written})  # checked here; kept as written...
        except cluster.ClusterError as exc:
            _fail(exc.exit_code, f"--join: {exc.message}", [], [exc.hint])
        if not full.endswith(written.removeprefix("tls://")):  # ...but HOST alone: HOST:7400, as cluster= says
            data["join"] = full if written.startswith("tls://") else full.removeprefix("tls://")
    if not data.get("agent", True) and not data.get("coordinator"):
        _fail(2, "--no-agent only makes sense with --coordinator", [], ["drop --no-agent"])
    if tags is not None and not data.get("tags"):  # --tags '' or ',,,': said, not taken for none
        _fail(2, f"--tags {tags!r} names no tag", [], ["tags are words separated by commas: --tags web,prod"])
    for tag in data.get("tags") or []:
        if not isinstance(tag, str) or not tag or "," in tag or any(c.isspace() for c in tag):
            _fail(2, f"invalid tag {tag!r}", [], ["tags are words separated by commas: --tags web,prod"])
    slots = data.get("max_concurrent_tasks", 4)
    if isinstance(slots, bool) or not isinstance(slots, int) or not 1 <= slots <= MAX_SLOTS:
        _fail(2, f"--max-concurrent-tasks must be a whole number from 1 to {MAX_SLOTS}, not {slots!r}", [],
              ["e.g. --max-concurrent-tasks 2 (max_concurrent_tasks = 2 in --config)"])  # fmt: skip
    port = data.get("port")
    if port is not None and (isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535):
        # the TOML's was checked; a command line's 70000 listened on 4464 and said 70000
        _fail(2, f"--port must be a port number from 1 to 65535, not {port!r}", [], ["e.g. --port 7400"])
    timeout = data.get("agent_timeout", AGENT_TIMEOUT)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= 86400:
        _fail(2, f"agent_timeout must be a number of seconds above 0 and at most a day (86400), not {timeout!r}", [],
              ["e.g. --agent-timeout 30"])  # fmt: skip
    return Settings(**data)


def _start_options(f: Any) -> Any:
    options = [
        click.option("--name", default=None, help="The agent's name (default: the host name)."),
        click.option("--tags", default=None, help="Comma-separated tags: --tags web,prod."),
        click.option("--join", default=None, metavar="HOST:PORT", help="The coordinator to join."),
        click.option("--port", type=int, default=None, help="The coordinator's port (default 7400)."),
        click.option("--host", default=None, help="Address to listen on (default 127.0.0.1; 0.0.0.0 for all)."),
        click.option("--coordinator", is_flag=True, help="Run the cluster's scheduler here (with an agent)."),
        click.option("--no-agent", is_flag=True, help="With --coordinator: run the scheduler only."),
        click.option(
            "--max-concurrent-tasks",
            "max_tasks",
            type=int,
            default=None,
            help="Commands this agent runs at once (default 4).",
        ),
        click.option(
            "--max-memory-percent",
            "max_memory",
            type=click.IntRange(1, 100),
            default=None,
            help="Memory the agent may use, in percent of the machine's.",
        ),
        click.option("--config", "config", default=None, metavar="FILE", help="Settings from a TOML file."),
        click.option("--cert", "cert_name", default=None, help="The certificate to use (default: --name's)."),
        click.option(
            "--agent-timeout",
            "agent_timeout",
            type=float,
            default=None,
            metavar="SECONDS",
            help="With --coordinator: drop an agent silent this long (no heartbeat; default 30).",
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


@agent.command()
@_start_options
@click.option("--foreground", is_flag=True, help="Run in this process (for systemd and containers).")
def start(foreground: bool, wait: float = 0.0, **kwargs: Any) -> None:
    """Start an agent (and, with --coordinator, the cluster's scheduler)."""
    from dataclasses import asdict

    from nexus_agent import certs
    from nexus_agent.paths import agent_files

    settings = _settings(**kwargs)
    try:
        certs.check_files(settings.cert_files())
    except certs.CertError as exc:
        _cert_error(exc)
    pid_file, info_file, log_file = agent_files(settings.name)
    running = _pid(pid_file)
    if running:
        _fail(1, f"agent {settings.name} already runs here (pid {running})", [],
              [f"stop it first: nexus agent stop {settings.name}"])  # fmt: skip
    if settings.coordinator and not _port_free(settings.host, settings.port, wait):
        _fail(2, f"port {settings.port} on {settings.host} is in use by another process", [],
              ["choose another with --port (agents then --join HOST:THAT_PORT)",
               f"or stop what listens there (`ss -ltnp 'sport = :{settings.port}'` names it)"])  # fmt: skip
    payload = json.dumps(asdict(settings))
    if foreground:
        from nexus_agent.daemon import main

        sys.exit(main([payload]))
    os.makedirs(os.path.dirname(log_file), exist_ok=True)
    for path in (info_file,):
        if os.path.exists(path):
            os.remove(path)
    with open(log_file, "ab") as log:
        started = log.tell()  # this start's lines: an earlier failure's stay in the log, not the error
        proc = subprocess.Popen(
            [sys.executable, "-m", "nexus_agent.daemon", payload],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        code = proc.poll()
        if code is not None:
            for path in (pid_file, info_file):  # a pid file left behind names a pid the system reuses
                with contextlib.suppress(OSError):
                    os.remove(path)
            _fail(code if code in (2, 3) else 1, f"agent {settings.name} did not start (exit code {code})",
                  _tail(log_file, since=started), [f"see {log_file}"])  # fmt: skip
        info = _read(info_file)
        if info.get("ready"):
            role = "coordinator and agent" if settings.coordinator and settings.agent else (
                "coordinator" if settings.coordinator else "agent")  # fmt: skip
            click.echo(f"started {role} {settings.name} (pid {proc.pid}) on {info.get('cluster')}")
            if info.get("health"):
                click.echo(f"health: {info['health']}")
            return
        time.sleep(0.1)
    proc.terminate()
    _fail(
        1,
        f"agent {settings.name} was not ready after {START_TIMEOUT:.0f}s",
        _tail(log_file, since=started),
        [f"see {log_file}"],
    )


def _read(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _tail(path: str, lines: int = 8, since: int = 0) -> list[str]:
    """The last error lines of the log from byte ``since`` on (else its last lines)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            fh.seek(since)
            text = fh.read().splitlines()
    except OSError:
        return []
    wanted = [t for t in text if "error" in t.lower()] or text
    return wanted[-lines:]


def _pid(path: str) -> int:
    """The pid in ``path`` when that process still runs and is this agent's daemon, else 0."""
    try:
        with open(path, encoding="utf-8") as fh:
            pid = int(fh.read().strip())
    except (OSError, ValueError):
        return 0
    name = os.path.basename(path).removesuffix(".pid")
    # a zombie (killed, not yet reaped) does not run; a pid the system gave to another
    # process since (a pid file a crash left) is not ours to signal
    return pid if _alive(pid) and _ours(pid, name) else 0


def _ours(pid: int, name: str) -> bool:
    """Whether process ``pid`` is agent ``name``: its daemon (``python -m nexus_agent.daemon``
    with its settings) or ``nexus agent start --foreground`` (a systemd unit's); True where that
    cannot be seen (no ``/proc``)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            words = fh.read().split(b"\0")
    except FileNotFoundError:
        return not os.path.isdir("/proc/self")  # gone, unless there is no /proc at all
    except OSError:
        return True
    if b"nexus_agent.daemon" in words:
        try:
            settings = json.loads(words[words.index(b"nexus_agent.daemon") + 1])
        except (IndexError, ValueError):
            return False
        return isinstance(settings, dict) and settings.get("name") == name
    if not (b"agent" in words and b"start" in words and b"--foreground" in words):
        return False
    given = words[words.index(b"--name") + 1] if b"--name" in words[:-1] else None
    return given is None or given == name.encode()  # named in its --config file, or by default


@agent.command()
@click.argument("names", nargs=-1)
def stop(names: tuple[str, ...]) -> None:
    """Stop agents started on this machine (every one when no NAME is given)."""
    import glob

    from nexus_agent.paths import agent_files, state_dir

    named = bool(names)
    if not names:
        names = tuple(sorted(os.path.basename(p)[:-4] for p in glob.glob(os.path.join(state_dir(), "*.pid"))))
    stopped = []
    for name in names:
        pid_file, info_file, _ = agent_files(name)
        pid = _pid(pid_file)
        if not pid:
            with contextlib.suppress(OSError):
                os.remove(pid_file)  # the settings (NAME.json) stay: `nexus agent restart` uses them
            if named and len(names) == 1:
                _fail(1, f"agent {name} does not run on this machine", [], ["`nexus agent status` lists agents"])
            continue
        os.kill(pid, signal.SIGTERM)
        stopped.append((name, pid))
    for name, pid in stopped:
        deadline = time.monotonic() + STOP_TIMEOUT
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.05)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 5.0  # until its sockets are closed: a restart binds them again
            while time.monotonic() < deadline and _alive(pid):
                time.sleep(0.05)
        pid_file, info_file, _ = agent_files(name)
        for path in (pid_file, info_file):
            if os.path.exists(path):
                os.remove(path)
        click.echo(f"stopped agent {name} (pid {pid})")
    if not stopped and not named:
        click.echo("no agent runs on this machine")


@agent.command()
@click.argument("names", nargs=-1)
def restart(names: tuple[str, ...]) -> None:
    """Restart agents started on this machine, with the settings they were started with."""
    import glob

    from nexus_agent.paths import agent_files, state_dir

    if not names:
        names = tuple(sorted(os.path.basename(p)[:-5] for p in glob.glob(os.path.join(state_dir(), "*.json"))))
    if not names:
        _fail(1, "no agent runs on this machine", [], ["start one with `nexus agent start`"])
    saved = {}
    for name in names:
        info = _read(agent_files(name)[1])
        if not info:
            _fail(1, f"agent {name} does not run on this machine", [], ["`nexus agent status` lists agents"])
        saved[name] = info
    ctx = click.get_current_context()
    running = tuple(name for name in names if _pid(agent_files(name)[0]))
    if running:  # one that crashed starts again with its settings (they outlive it)
        ctx.invoke(stop, names=running)
    for name, info in saved.items():
        ctx.invoke(
            start,
            foreground=False,
            # The coordinator's port may still be held for a moment after the old process
            # ended (a socket its child or a client left behind): wait for it, then bind again.
            wait=STOP_TIMEOUT,
            name=name,
            tags=",".join(info.get("tags") or []) or None,
            join=info.get("join") or None,
            port=info.get("port"),
            host=info.get("host"),
            coordinator=bool(info.get("coordinator")),
            no_agent=not info.get("agent", True),
            max_tasks=info.get("max_concurrent_tasks"),
            max_memory=info.get("max_memory_percent") or None,
            config=None,
            cert_name=info.get("cert_name") or None,
            agent_timeout=info.get("agent_timeout"),
        )


def _unit_text(text: str) -> str:
    """``text`` for a systemd unit: its ``%`` specifiers and ``$`` variables taken literally."""
    return text.replace("%", "%%").replace("$", "$$")


def _unit_quoted(text: str) -> str:
    """``text`` inside a systemd unit's double quotes (``Environment="..."``)."""
    return _unit_text(text).replace("\\", "\\\\").replace('"', '\\"')


def _port_free(host: str, port: int, wait: float = 0.0) -> bool:
    """Whether a listener can bind ``host:port`` now (as Dask's does, with SO_REUSEADDR, so a
    closed connection's TIME_WAIT does not count), retrying for up to ``wait`` seconds. An
    address that does not resolve counts as free: the agent's own start reports it."""
    import errno
    import socket

    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except (OSError, UnicodeError):
        return True
    deadline = time.monotonic() + wait
    while True:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
                return True
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)


def _alive(pid: int) -> bool:
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            return False
    except ChildProcessError:
        pass
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            if fh.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                return False
    except (OSError, IndexError):
        pass
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def _connect(cluster_address: str | None) -> Any:
    from nexus_agent import cluster

    try:
        addr = cluster.address({"cluster": cluster_address} if cluster_address else None)
        return cluster.client(addr)
    except cluster.ClusterError as exc:
        _fail(exc.exit_code, exc.message, [], [exc.hint] if exc.hint else [])


@agent.command()
@click.option("--cluster", "cluster_address", default=None, help="The coordinator (default: NEXUS_CLUSTER or local).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", help="text or json.")
def status(cluster_address: str | None, fmt: str) -> None:
    """The cluster's agents: name, tags, running commands, slots, CPU, memory."""
    from nexus_agent import cluster

    client = _connect(cluster_address)
    found = cluster.fresh_agents(client)
    addr = client.scheduler.address
    if fmt == "json":
        click.echo(json.dumps({"cluster": addr, "agents": [a.to_dict() for a in found]}))
        return
    click.echo(f"cluster {addr}: {len(found)} agent(s)")
    for a in found:
        mem = f"{a.memory / 2**20:.0f} MiB"
        state = " draining" if a.draining else ""
        click.echo(
            f"  {a.name:<20} tags: {','.join(a.tags) or '-':<16} running {a.running}/{a.slots}  "
            f"cpu {a.cpu:.0f}%  mem {mem}{state}"
        )


@agent.command()
@click.argument("name")
@click.option("--cluster", "cluster_address", default=None, help="The coordinator (default: NEXUS_CLUSTER or local).")
@click.option("--off", is_flag=True, help="Undo a drain: the agent takes new commands again.")
def drain(name: str, cluster_address: str | None, off: bool) -> None:
    """Stop agent NAME from taking new commands; the ones it runs finish (--off: take them again)."""
    from nexus_agent import cluster
    from nexus_agent.runner import set_draining

    client = _connect(cluster_address)
    found = {a.name: a for a in cluster.fresh_agents(client)}
    if name not in found:
        _fail(
            1,
            f"no agent named {name!r} in the cluster",
            [f"agents: {cluster.describe(list(found.values()))}"],
        )
    client.run(set_draining, not off, workers=[found[name].address])
    # The agent heartbeats at once; wait (bounded) until the coordinator reports the change,
    # so that a run started next never picks a draining agent (or may pick it again).
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline:
        if any(a.name == name and a.draining is not off for a in cluster.fresh_agents(client)):
            break
        time.sleep(0.1)
    else:
        click.echo(f"warning: the coordinator does not report {name} as {'taking commands' if off else 'draining'} yet",
                   err=True)  # fmt: skip
    if off:
        click.echo(f"agent {name} takes new commands again")
    else:
        click.echo(f"agent {name} is draining: it takes no new commands (undo: nexus agent drain {name} --off)")


@agent.command("systemd-unit")
@_start_options
def systemd_unit(**kwargs: Any) -> None:
    """Print a systemd unit that runs this agent and restarts it when it crashes."""
    from nexus_agent.daemon import AGENT_TIMEOUT

    settings = _settings(**kwargs)
    args = ["agent", "start", "--foreground", "--name", settings.name]
    if settings.tags:
        args += ["--tags", ",".join(settings.tags)]
    if settings.coordinator:
        args += ["--coordinator", "--port", str(settings.port)]
        if not settings.agent:
            args += ["--no-agent"]
        if float(settings.agent_timeout) != AGENT_TIMEOUT:
            args += ["--agent-timeout", f"{settings.agent_timeout:g}"]
    else:
        args += ["--join", settings.join]
    if settings.host != "127.0.0.1":
        args += ["--host", settings.host]
    args += ["--max-concurrent-tasks", str(settings.max_concurrent_tasks)]
    if settings.max_memory_percent:
        args += ["--max-memory-percent", str(settings.max_memory_percent)]
    if settings.cert_name:
        args += ["--cert", settings.cert_name]
    import pwd

    from nexus_agent.paths import config_dir, state_dir

    nexus = os.path.join(os.path.dirname(sys.executable), "nexus")
    command = _unit_text(" ".join(shlex.quote(a) for a in [nexus, *args]))
    # As the user who made it, with that user's folders: installed with `sudo tee` it ran as
    # root and looked for the certificates in /root/.config/nexus/agent.
    folders = [f"NEXUS_AGENT_DIR={os.path.abspath(config_dir())}", f"NEXUS_AGENT_STATE={os.path.abspath(state_dir())}"]
    click.echo(
        "\n".join(
            [
                "[Unit]",
                f"Description=Nexus agent {settings.name}",
                "After=network-online.target",
                "Wants=network-online.target",
                "",
                "[Service]",
                f"User={pwd.getpwuid(os.geteuid()).pw_name}",
                *(f'Environment="{_unit_quoted(f)}"' for f in folders),
                f"ExecStart={command}",
                "Restart=on-failure",
                "RestartSec=5",
                "KillMode=mixed",
                "TimeoutStopSec=30",
                "",
                "[Install]",
                "WantedBy=multi-user.target",
            ]
        )
    )
