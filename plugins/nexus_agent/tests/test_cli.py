"""``nexus agent``: certificates, start, status, stop, errors; mutual TLS refuses strangers."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from pathlib import Path

from agentbed import AGENTS, Cluster, kill, nexus


def test_status_lists_every_agent_with_its_tags(agent_cluster: Cluster) -> None:
    out = agent_cluster.nexus("agent", "status", "--format", "json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    tags = {a["name"]: a["tags"] for a in data["agents"]}
    assert tags == {"coord": ["hub"], **{n: t.split(",") for n, t in AGENTS.items()}}
    assert all(a["slots"] == 2 for a in data["agents"])
    text = agent_cluster.nexus("agent", "status")
    assert text.returncode == 0 and "a2" in text.stdout and "linux,beefy" in text.stdout


def test_init_refuses_to_replace_a_ca(agent_cluster: Cluster) -> None:
    out = agent_cluster.nexus("agent", "init")
    assert out.returncode == 2
    assert "already exists" in out.stderr and "Traceback" not in out.stderr


def test_a_client_with_a_foreign_certificate_is_refused(agent_cluster: Cluster, tmp_path: Path) -> None:
    other = {"NEXUS_AGENT_DIR": str(tmp_path / "other"), "NEXUS_AGENT_STATE": str(tmp_path / "state")}
    assert nexus(other, "agent", "init", "--name", "stranger").returncode == 0
    out = agent_cluster.nexus("agent", "status", **other)
    assert out.returncode == 3, out
    assert "certificate" in out.stderr and "CA" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr


def test_an_agent_with_a_foreign_certificate_cannot_join(agent_cluster: Cluster, tmp_path: Path) -> None:
    other = {"NEXUS_AGENT_DIR": str(tmp_path / "other"), "NEXUS_AGENT_STATE": str(tmp_path / "state")}
    assert nexus(other, "agent", "init", "--name", "stranger").returncode == 0
    out = agent_cluster.nexus("agent", "start", "--name", "stranger", "--join",
                              agent_cluster.address.removeprefix("tls://"), **other)  # fmt: skip
    assert out.returncode == 3, out
    assert "certificate" in out.stderr, out.stderr


def test_a_certificate_that_cannot_work_is_named_before_anything_connects(
    agent_cluster: Cluster, tmp_path: Path
) -> None:
    """A key of another certificate, a certificate of another CA or a garbage key file were
    said as TLS alerts (exit 3, "the cluster refuses"), an expired one as "not issued by
    the cluster's CA"; each is a configuration mistake of this machine (exit 2) naming its file."""
    import shutil

    mine = tmp_path / "mine"
    assert nexus({"NEXUS_AGENT_DIR": str(mine)}, "agent", "init", "--name", "hub").returncode == 0
    assert nexus({"NEXUS_AGENT_DIR": str(mine)}, "agent", "cert", "box").returncode == 0
    other = tmp_path / "other"
    assert nexus({"NEXUS_AGENT_DIR": str(other)}, "agent", "init", "--name", "box").returncode == 0
    join = agent_cluster.address.removeprefix("tls://")
    cases = {
        "another's key": ("box-key.pem", (mine / "hub-key.pem").read_bytes(), "does not belong to the certificate"),
        "another CA's certificate": ("box.pem", (other / "box.pem").read_bytes(), "was not issued by the CA in"),
        "a garbage key": ("box-key.pem", b"-----BEGIN PRIVATE KEY-----\nnot a key\n", "cannot read the key"),
    }
    for case, (name, data, said) in cases.items():
        folder = tmp_path / case.replace(" ", "-").replace("'", "")
        shutil.copytree(mine, folder)
        (folder / name).write_bytes(data)
        env = {"NEXUS_AGENT_DIR": str(folder), "NEXUS_AGENT_STATE": str(tmp_path / "state")}
        out = agent_cluster.nexus("agent", "start", "--name", "box", "--join", join, **env)
        assert out.returncode == 2 and said in out.stderr and str(folder) in out.stderr, (case, out.stderr)
        assert "Traceback" not in out.stderr


def test_a_second_agent_of_the_same_name_is_refused_in_one_line(agent_cluster: Cluster, tmp_path: Path) -> None:
    env = {"NEXUS_AGENT_STATE": str(tmp_path / "state")}  # another machine's pid files: a1 runs "elsewhere"
    out = agent_cluster.nexus("agent", "start", "--name", "a1", "--join", agent_cluster.address.removeprefix("tls://"),
                              **env)  # fmt: skip
    assert out.returncode == 2, out
    assert "an agent named a1 is already in the cluster" in out.stderr and "Traceback" not in out.stderr, out


def test_start_without_a_coordinator_to_join_is_a_clear_error(agent_cluster: Cluster) -> None:
    out = agent_cluster.nexus("agent", "start", "--name", "lonely")
    assert out.returncode == 2
    assert "--join" in out.stderr and "Traceback" not in out.stderr


def test_no_cluster_configured_is_a_clear_error(tmp_path: Path) -> None:
    env = {"NEXUS_AGENT_DIR": str(tmp_path / "c"), "NEXUS_AGENT_STATE": str(tmp_path / "s"), "NEXUS_CLUSTER": ""}
    out = nexus(env, "agent", "status")
    assert out.returncode == 2
    assert "no agent cluster" in out.stderr


def test_systemd_unit_restarts_on_failure(agent_cluster: Cluster) -> None:
    out = agent_cluster.nexus("agent", "systemd-unit", "--name", "pi-1", "--tags", "arm", "--join", "hub:7400")
    assert out.returncode == 0, out.stderr
    assert "Restart=on-failure" in out.stdout
    assert "agent start --foreground --name pi-1 --tags arm --join hub:7400" in out.stdout
    # as its maker, with the maker's folders (with `sudo tee` it ran as root without certificates)
    import pwd

    assert f"User={pwd.getpwuid(os.geteuid()).pw_name}" in out.stdout
    assert f'Environment="NEXUS_AGENT_DIR={agent_cluster.env["NEXUS_AGENT_DIR"]}"' in out.stdout
    odd = agent_cluster.nexus("agent", "systemd-unit", "--name", "pi-1", "--tags", "a%b,$x", "--join", "hub:7400")
    assert "--tags 'a%%b,$$x'" in odd.stdout, odd.stdout  # systemd's specifiers and variables, taken literally


def test_the_coordinator_answers_health_checks(agent_cluster: Cluster) -> None:
    import urllib.error
    import urllib.request

    info = json.loads((agent_cluster.root / "state" / "coord.json").read_text())
    assert info["health"].startswith("http://127.0.0.1:")
    with urllib.request.urlopen(info["health"], timeout=10) as answer:
        assert answer.status == 200
        assert answer.read().decode().strip() == "ok"
    # Nothing else on that plain-HTTP port: Dask's pages showed logs and tasks to anyone.
    base = info["health"].removesuffix("/health")
    for page in ("/info/main/logs.html", "/info/main/workers.html", "/metrics", "/eventstream", "/statics/"):
        try:
            with urllib.request.urlopen(base + page, timeout=10) as answer:
                status = answer.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        assert status == 404, (page, status)


def test_a_foreground_agent_from_a_toml_file_joins_with_its_settings_and_answers_health_checks(
    agent_cluster: Cluster, tmp_path: Path
) -> None:
    import os
    import subprocess
    import sys
    import urllib.request

    assert agent_cluster.nexus("agent", "cert", "t1").returncode == 0
    join = agent_cluster.address.removeprefix("tls://")
    conf = tmp_path / "agent.toml"
    conf.write_text(
        f'[agent]\nname = "t1"\ntags = ["toml", "edge"]\njoin = "{join}"\n'
        "max_concurrent_tasks = 3\nmax_memory_percent = 50\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "nexus_core", "agent", "start", "--config", str(conf), "--foreground"],
        env={**os.environ, **agent_cluster.env},
        cwd=agent_cluster.work,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        agent_cluster.wait_agents({"t1"}, seconds=60)
        info = json.loads((agent_cluster.root / "state" / "t1.json").read_text())
        assert info["pid"] == proc.pid
        with urllib.request.urlopen(info["health"], timeout=10) as answer:  # the agent's own endpoint
            assert answer.status == 200 and answer.read().decode().strip() == "ok"
        listed = json.loads(agent_cluster.nexus("agent", "status", "--format", "json").stdout)["agents"]
        [t1] = [a for a in listed if a["name"] == "t1"]
        assert t1["tags"] == ["toml", "edge"] and t1["slots"] == 3
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        assert 0 < t1["memory_limit"] <= total // 2 + (1 << 20), t1
        out = agent_cluster.nexus("agent", "stop", "t1", timeout=60)
        assert out.returncode == 0 and "stopped agent t1" in out.stdout, out
        output, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, output
        agent_cluster.wait_agents({"t1"}, present=False)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    unit = agent_cluster.nexus("agent", "systemd-unit", "--config", str(conf))
    assert unit.returncode == 0, unit.stderr
    assert (f"agent start --foreground --name t1 --tags toml,edge --join {join} --max-concurrent-tasks 3 "
            "--max-memory-percent 50") in unit.stdout, unit.stdout  # fmt: skip
    bad = tmp_path / "bad.toml"
    bad.write_text('nmae = "t1"\n')
    out = agent_cluster.nexus("agent", "start", "--config", str(bad))
    assert out.returncode == 2 and "unknown key 'nmae'" in out.stderr and "Traceback" not in out.stderr, out


def test_start_refuses_bad_settings_before_anything_starts(agent_cluster: Cluster, tmp_path: Path) -> None:
    import shutil

    from nexus_agent.certs import default_name

    # a copy of the cluster's certificates with one for bad1 and one for this machine (the
    # certificate a name without one of its own would fall back to)
    env = {"NEXUS_AGENT_DIR": str(tmp_path / "certs")}
    shutil.copytree(agent_cluster.root / "certs", tmp_path / "certs")
    for name in ("bad1", default_name()):
        assert agent_cluster.nexus("agent", "cert", name, **env).returncode == 0
    join = agent_cluster.address.removeprefix("tls://")
    cases = [
        (("--join", "hub.lan:abc"), "--join: cluster address 'hub.lan:abc' is not HOST:PORT"),
        (("--join", join, "--max-concurrent-tasks", "0"), "--max-concurrent-tasks must be"),
        (("--join", join, "--tags", "arm,home lab"), "invalid tag 'home lab'"),
        (("--join", join, "--cert", "a1x"), "no certificate for 'a1x'"),  # not this machine's instead
    ]
    try:
        for args, message in cases:
            out = agent_cluster.nexus("agent", "start", "--name", "bad1", *args, **env)
            assert out.returncode == 2, (args, out)
            assert message in out.stderr and "Traceback" not in out.stderr, (args, out.stderr)
            assert "bad1" not in agent_cluster.pids()  # nothing started
    finally:
        if "bad1" in agent_cluster.pids():
            agent_cluster.nexus("agent", "stop", "bad1", timeout=60, **env)
    out = agent_cluster.nexus("agent", "status", "--cluster", "tls://127.0.0.1:notaport")
    assert out.returncode == 2 and "is not HOST:PORT" in out.stderr, out


def test_a_toml_value_of_the_wrong_type_is_named_before_anything_starts(agent_cluster: Cluster, tmp_path: Path) -> None:
    join = agent_cluster.address.removeprefix("tls://")
    conf = tmp_path / "agent.toml"
    for line, message in (
        ("tags = 5", 'tags must be a list of tags (["arm", "home"]) or "arm,home", not 5'),
        ('coordinator = "yes"', "coordinator must be true or false, not 'yes'"),  # not a coordinator on 7400
        ("max_memory_percent = 500", "max_memory_percent must be a whole number from 1 to 100, not 500"),
        ('port = "x"', "port must be a port number (1 to 65535), not 'x'"),
    ):
        conf.write_text(f'[agent]\nname = "t2"\njoin = "{join}"\n{line}\n')
        out = agent_cluster.nexus("agent", "start", "--config", str(conf))
        assert out.returncode == 2, (line, out)
        assert f"{conf}: {message}" in out.stderr and "internal error" not in out.stderr, (line, out.stderr)
        assert "t2" not in agent_cluster.pids()


def test_a_coordinator_on_a_port_in_use_is_refused_naming_it(agent_cluster: Cluster, tmp_path: Path) -> None:
    """Before this, the daemon died on Dask's 'Address already in use' and `start` showed a log tail."""
    env = {"NEXUS_AGENT_DIR": str(tmp_path / "c"), "NEXUS_AGENT_STATE": str(tmp_path / "s")}
    assert nexus(env, "agent", "init", "--name", "hub2").returncode == 0
    port = agent_cluster.address.rsplit(":", 1)[1]  # the bed's coordinator listens there
    out = nexus(env, "agent", "start", "--coordinator", "--no-agent", "--name", "hub2", "--port", port)
    assert out.returncode == 2, out
    assert f"port {port} on 127.0.0.1 is in use by another process" in out.stderr, out.stderr
    assert "--port" in out.stderr and "Traceback" not in out.stderr
    assert not list((tmp_path / "s").glob("*.pid"))  # nothing started


def test_restart_waits_for_the_old_coordinator_s_port_to_be_released() -> None:
    """`nexus agent restart` binds the port again as soon as it is free, not while the old
    process (or a socket it left) still holds it: CI saw 'Address already in use' there."""
    import socket
    import threading

    from nexus_agent.cli import _port_free

    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    assert not _port_free("127.0.0.1", port, wait=0.3)
    threading.Timer(0.5, holder.close).start()
    assert _port_free("127.0.0.1", port, wait=10)
    assert _port_free("no-such-host.invalid", port)  # the agent's own start reports that one


def test_join_without_a_port_joins_the_default_port_as_the_cluster_setting_does(agent_cluster: Cluster) -> None:
    """`--join hub` passed the check (config(cluster="hub") means hub:7400) but the agent then
    failed on int('hub') with exit 3; it joins hub:7400 now (a port given is kept as written)."""
    for given, used in (("hub", "hub:7400"), ("hub:7500", "hub:7500"), ("tls://[::1]", "tls://[::1]:7400")):
        out = agent_cluster.nexus("agent", "systemd-unit", "--name", "pi-1", "--join", given)
        assert out.returncode == 0, out.stderr
        assert f"--join {shlex.quote(used)}" in out.stdout, (given, out.stdout)


def test_names_taken_by_the_cas_own_files_are_refused(agent_cluster: Cluster, tmp_path: Path) -> None:
    """`nexus agent cert ca` overwrote ca.pem with a leaf certificate, `cert ca-key` the CA's
    private key: the cluster's CA was gone for good."""
    folder = tmp_path / "agent"
    assert agent_cluster.nexus("agent", "init", "--name", "hub", NEXUS_AGENT_DIR=str(folder)).returncode == 0
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    for name in ("ca", "ca-key"):
        out = agent_cluster.nexus("agent", "cert", name, NEXUS_AGENT_DIR=str(folder))
        assert out.returncode == 2 and "taken by the cluster CA's own files" in out.stderr, out
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    other = tmp_path / "other"
    out = agent_cluster.nexus("agent", "init", "--name", "ca", NEXUS_AGENT_DIR=str(other))
    assert out.returncode == 2 and not (other / "ca.pem").exists(), out  # no CA without its machine


def test_stop_never_signals_a_process_a_stale_pid_file_names(agent_cluster: Cluster, tmp_path: Path) -> None:
    """A pid file a crash or a failed start left names a pid the system gives to another
    process: `nexus agent stop` killed whatever had it."""
    state = tmp_path / "state"
    state.mkdir()
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        (state / "ghost.pid").write_text(f"{bystander.pid}\n")
        named = agent_cluster.nexus("agent", "stop", "ghost", NEXUS_AGENT_STATE=str(state))
        assert named.returncode == 1 and "does not run on this machine" in named.stderr, named
        (state / "ghost.pid").write_text(f"{bystander.pid}\n")
        every = agent_cluster.nexus("agent", "stop", NEXUS_AGENT_STATE=str(state))
        assert every.returncode == 0 and "no agent runs on this machine" in every.stdout, every
        assert bystander.poll() is None, "the bystander was killed"
    finally:
        bystander.kill()
        bystander.wait()


def test_restart_after_a_crash_starts_the_agent_again_with_its_settings(agent_cluster: Cluster) -> None:
    """It refused ("does not run on this machine") and deleted the saved settings."""
    assert agent_cluster.nexus("agent", "cert", "crashy").returncode == 0
    out = agent_cluster.start("crashy", "--tags", "linux,crashy")
    assert out.returncode == 0, out.stderr
    try:
        kill(agent_cluster.pids()["crashy"])
        agent_cluster.wait_agents({"crashy"}, present=False, seconds=60)
        again = agent_cluster.nexus("agent", "restart", "crashy")
        assert again.returncode == 0, again.stderr
        agent_cluster.wait_agents({"crashy"})
        status = json.loads(agent_cluster.nexus("agent", "status", "--format", "json").stdout)
        (crashy,) = [a for a in status["agents"] if a["name"] == "crashy"]
        assert "crashy" in crashy["tags"], crashy
    finally:
        agent_cluster.nexus("agent", "stop", "crashy")
