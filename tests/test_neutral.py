"""A transport-neutral core: what is SSH's is declared by nexus-ssh, never named by the core.

The ``ssh_*`` keys, the SSH events, the SSH headlines and hints of the failure report and the
``-u``/``-i`` mapping all come from the plugin; without it the core says which package to
install. The meta-test at the end keeps SSH names out of ``nexus_core/``.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from nexus_core.engine import Failure
from nexus_core.options import CONFIG_OPTIONS, Option, config_overrides
from nexus_core.output.report import failures_text
from nexus_core.output.style import Style
from nexus_core.packages import for_config_key
from nexus_core.plugins import PluginManager, Policy

ROOT = Path(__file__).resolve().parents[1]

LOCAL_WITH_SSH_KEYS = """
from nexus_core import config, run, task

config(ssh_user="deploy", parallel_limit=2)


@task
def hello():
    run("echo hello-local")
"""

NO_PLUGINS = {"NEXUS_LOAD_PLUGINS": ""}


def full_registry():  # type: ignore[no-untyped-def]
    """The registry with the installed plugins (nexus-ssh among them), whatever the user's policy."""
    return PluginManager(policy=Policy()).registry


# --- config keys ---------------------------------------------------------------------------


def test_the_core_declares_no_ssh_key_and_nexus_ssh_declares_them_unchanged():
    assert not [k for k in CONFIG_OPTIONS if k.startswith("ssh")]
    reg = full_registry()
    expected = {
        "ssh_user": ((str,), None, ()),
        "ssh_identity": ((str,), None, ()),
        "ssh_port": ((int,), 22, ()),
        "ssh_known_hosts_file": ((str,), None, ()),
        "ssh_host_key_verification": ((str,), "strict", ("strict", "accept_new", "tofu", "off")),
        "ssh_jump": ((str, list), None, ()),
        "ssh_pool_size": ((int,), 4, ()),
        "ssh_connect_timeout": ((int, float), 10, ()),
    }
    for key, (types, default, choices) in expected.items():
        opt = reg.config_options[key]
        assert (opt.types, opt.default, opt.choices) == (types, default, choices), key
        assert reg.owners[f"nexus_config_options:{key}"] == "nexus-ssh"
    assert reg.config_options["ssh_port"].problem(70000) == "ssh_port must be <= 65535"
    assert reg.config_options["ssh_pool_size"].problem(0) == "ssh_pool_size must be >= 1, not 0"
    assert reg.config_options["ssh_user"].cli_override == "user"
    assert reg.config_options["ssh_identity"].cli_override == "identity"


def test_cli_values_reach_the_keys_their_owner_declares():
    options = {
        "parallel_limit": CONFIG_OPTIONS["parallel_limit"],
        "x_user": Option("x_user", (str,), cli_override="user"),
    }
    assert config_overrides(options, user="bob", identity="k", parallel_limit=None) == {"x_user": "bob"}
    assert config_overrides(options, parallel_limit=3) == {"parallel_limit": 3}


def test_package_hints_by_key_prefix():
    assert for_config_key("ssh_user") == "nexus-ssh"
    assert for_config_key("vault_addr") == "nexus-vault"
    assert for_config_key("parallel_limit") is None


def test_ssh_key_without_nexus_ssh_warns_on_a_local_run_and_fails_validate(nexus_project):
    nexus_project.write(LOCAL_WITH_SSH_KEYS)
    out = nexus_project.run("run", "hello", env=NO_PLUGINS)
    assert out.code == 0, out
    assert "hello-local" in out.stdout
    # nexus-ssh is installed here, only kept out by NEXUS_LOAD_PLUGINS: the message says so
    # (the wording for a plugin not installed at all is tested in tests/test_plugins.py)
    assert "config() key 'ssh_user' needs the nexus-ssh plugin: nexus-ssh is installed but blocked" in out.stderr
    assert "allow nexus-ssh in NEXUS_LOAD_PLUGINS" in out.stderr and "unknown" not in out.stderr.lower()
    assert "so it is ignored" in out.stderr
    val = nexus_project.run("validate", env=NO_PLUGINS)
    assert val.code == 2, val
    assert "config() key 'ssh_user' needs the nexus-ssh plugin" in val.stderr and "blocked by policy" in val.stderr
    js = nexus_project.run("validate", "--format", "json", env=NO_PLUGINS)
    assert js.code == 2 and [p["code"] for p in js.json()["problems"]] == ["missing-plugin"]
    assert nexus_project.run("validate").code == 0  # with nexus-ssh the key is known


def test_a_key_of_no_known_plugin_is_still_unknown_with_a_suggestion(nexus_project):
    nexus_project.write(LOCAL_WITH_SSH_KEYS.replace("ssh_user=", "paralel_limit=9, ssh_user="))
    out = nexus_project.run("run", "hello")
    assert out.code == 2, out
    assert "config() has no key 'paralel_limit'" in out.stderr and "did you mean 'parallel_limit'?" in out.stderr


# --- -i / -u --------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [("run", "hello"), ("preflight", "hello"), ("run", "hello", "-n")])
def test_identity_naming_a_missing_key_file_is_a_configuration_error(nexus_project, tmp_path, command):
    nexus_project.write(LOCAL_WITH_SSH_KEYS)
    missing = tmp_path / "keys" / "id_nope"
    out = nexus_project.run(*command, "-i", str(missing))
    assert out.code == 2, out
    assert f"--identity: key file {missing} does not exist" in out.stderr
    assert "pass the path of an existing private key, e.g. -i ~/.ssh/id_ed25519" in out.stderr
    assert "Traceback" not in out.stderr and "hello-local" not in out.stdout


def test_identity_naming_a_folder_or_an_existing_key(nexus_project, tmp_path):
    nexus_project.write(LOCAL_WITH_SSH_KEYS)
    folder = nexus_project.run("run", "hello", "-i", str(tmp_path))
    assert folder.code == 2 and f"key file {tmp_path} is not a file" in folder.stderr, folder
    key = tmp_path / "id_test"
    key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nnot really a key\n-----END OPENSSH PRIVATE KEY-----\n")
    ok = nexus_project.run("run", "hello", "-i", str(key), "-u", "someone", "--format", "json")
    assert ok.code == 0, ok
    # A file that is no private key says so (exit 2), instead of a later "no key found".
    public = tmp_path / "id_test.pub"
    public.write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI user@host\n")
    pub = nexus_project.run("run", "hello", "-i", str(public))
    assert pub.code == 2 and f"key file {public} is a public key" in pub.stderr, pub
    assert "without .pub" in pub.stderr, pub
    script = tmp_path / "deploy.py"
    script.write_text("print('hello')\n")
    other = nexus_project.run("run", "hello", "-i", str(script))
    assert other.code == 2 and f"key file {script} is not a private key" in other.stderr, other
    bad = nexus_project.run("run", "hello", "-i", str(tmp_path / "nope"), "--format", "json")
    assert bad.code == 2 and bad.json()["problems"][0]["code"] == "bad-value"


def test_identity_without_nexus_ssh_is_ignored_by_a_local_run(nexus_project, tmp_path):
    nexus_project.write(LOCAL_WITH_SSH_KEYS.replace('config(ssh_user="deploy", ', "config("))
    out = nexus_project.run("run", "hello", "-i", str(tmp_path / "nope"), "-u", "x", env=NO_PLUGINS)
    assert out.code == 0, out


# --- the failure report ----------------------------------------------------------------------


def _failure(host: str, **kw: object) -> Failure:
    base: dict[str, object] = {
        "task": "deploy",
        "host": host,
        "command": "systemctl restart app",
        "status": "failed",
        "exit_code": 3,
        "reason": "exit code 3",
        "tail": ("Job for app.service failed",),
    }
    base.update(kw)
    return Failure(**base)  # type: ignore[arg-type]


def test_identical_failures_share_one_block_and_different_ones_do_not():
    style = Style(color=False, live=False, unicode=False, interactive=False)
    text = failures_text(style, [_failure("web-1"), _failure("web-12"), _failure("db", exit_code=4), _failure("web-2")])
    assert text.count("Error: Command failed") == 2
    assert "Error: Command failed (same error on 3 hosts: web-1, web-12, web-2)" in text
    assert "  Hosts: web-1, web-12, web-2\n" in text and "  Host: db\n" in text
    single = failures_text(style, [_failure("web-1")])
    assert "same error" not in single and "  Host: web-1\n" in single and single.endswith("\n")


def test_a_reason_naming_the_host_still_groups_and_a_longer_name_is_not_the_same_host():
    style = Style(color=False, live=False, unicode=False, interactive=False)
    lost = [
        _failure(h, status="unreachable", reason=f"Connection refused ({h} port 2222)", headline="X failed")
        for h in ("web-1", "web-2")
    ]
    text = failures_text(style, lost)
    assert text.count("Error: X failed") == 1 and "(same error on 2 hosts: web-1, web-2)" in text
    apart = [  # web-12 is not web-1: these two reasons differ
        _failure("web-1", status="unreachable", reason="Connection refused (web-12 port 2222)"),
        _failure("web-2", status="unreachable", reason="Connection refused (web-2 port 2222)"),
    ]
    assert failures_text(style, apart).count("Error: Connection to") == 2


def test_an_executor_headline_replaces_the_generic_one_and_no_transport_gets_ssh_hints():
    style = Style(color=False, live=False, unicode=False, interactive=False)
    generic = failures_text(style, [_failure("h", status="unreachable", reason="Connection refused", transport="x")])
    assert "Error: Connection to h failed" in generic
    assert "sshd" not in generic and "nexus preflight deploy" in generic
    own = failures_text(style, [_failure("h", headline="Agent unreachable")])
    assert "Error: Agent unreachable" in own


# --- events ---------------------------------------------------------------------------------


def test_the_docs_list_every_event_of_the_catalogue_with_its_fields():
    """docs/output.md's event table names every event (the core's and nexus-ssh's) and its fields."""
    text = (ROOT / "docs" / "output.md").read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| `([a-z.]+)` \| (.*) \|$", text, flags=re.MULTILINE))
    reg = full_registry()
    assert "ssh.connect" in reg.event_types and reg.owners["event:ssh.connect"] == "nexus-ssh"
    for name, cls in reg.event_types.items():
        assert name in rows, f"docs/output.md does not list {name}"
        listed = [re.sub(r"\s*\(.*?\)", "", f).strip() for f in rows[name].split(",")]
        fields = [f.name for f in dataclasses.fields(cls) if f.name not in ("run_id", "ts")]
        assert listed == fields, (name, listed, fields)


# --- nothing SSH-specific in the core --------------------------------------------------------

#: Lines of nexus_core/ that may say "ssh", each with why. Matched against the line's text
#: (not its file or number), so that moving code between modules keeps the list valid.
ALLOWED_SSH_LINES: dict[str, str] = {
    # Host strings without a scheme mean SSH: the nexusfile's documented default transport.
    r'transport: str = "ssh"': "the default transport of a bare host string",
    r"uses the default transport \(ssh\)": "docstring of the host-string parser",
    r"``ssh://web-1``": "docstring: an example of a transport scheme",
    r"\(``local``, ``ssh``, \.\.\.\)|\(``\"local\"``, ``\"ssh\"``\.\.\.\)": "docstrings naming example transports",
    # The package-hint table: names the package of a transport or key the core does not know.
    r'"ssh": "nexus-ssh"|"ssh_": "nexus-ssh"|"ssh_config": "nexus-ssh"': "the package-hint tables",
    # Ansible inventories name their connection variables so; the core reads them as Ansible does.
    r'"ansible_ssh_(host|port|user)"': "Ansible's inventory variables (nexus_core/discovery/inventory.py)",
    # User-visible text that must stay as it is (options and help of the CLI, the starter file).
    r"SSH private key \(overrides ssh_identity\)|SSH user \(overrides ssh_user\)": "-i/-u help texts",
    r"Do not check SSH authentication": "--skip-auth help text",
    r"Remote hosts need the SSH plugin: pip install nexus-ssh": "`nexus init` starter file",
    r"once nexus-ssh is installed": "`nexus init` starter file",
    r'config\(ssh_user="deploy", parallel_limit=10\)': "docstring of config(): the DSL's example",
    r'allow = \["nexus-ssh>=0\.1,<1"\]': "plugin policy message: an example allow list",
    r"come from the executor plugins \(``nexus-ssh``\)": "docstring of the pre-flight module",
    # Docstrings and comments that use SSH as the example of a transport or a plugin.
    r"\(``local``, ``ssh``, \.\.\.\)|\(``\"local\"``, ``\"ssh\"``\.\.\.\)|\(local, ssh, \.\.\.\)": "example transports",
    r'Registration\("ssh", "nexus_ssh\.executor:SshExecutor"\)': "kinds.py docstring: a registration example",
    r"``ssh://local``": "comment on host keys: an example of a scheme",
    r"nexus-ssh is installed but blocked by policy|``\"the 'ssh' transport\"``": "registry docstring: a hint example",
    r"transport that can \(e\.g\. ssh\)": "the message of a transport that cannot copy files",
    r'host\.get\("transport", "ssh"\)': "state records written before transports were stored: the default",
    r"nexus_core\.testing\.sshbed|``sshbed`` serves scripts too": "testing kit: the reusable sshd bed",
    # Audit records: the address of the user's login session to this machine (set by its sshd).
    r'env\.get\("SSH_CONNECTION"\)': "the audit records' source_ip",
    # Settings (config.toml / NEXUS_<KEY>): examples of a key.
    r"\(``ssh_user``, ``parallel_limit``|``NEXUS_SSH_USER`` for ``ssh_user``|e\.g\. ssh_user = ": "settings docs",
}


def test_the_core_names_nothing_ssh_specific():
    offending: list[str] = []
    for path in sorted((ROOT / "nexus_core").rglob("*.py")):
        if path.name == "sshbed.py":  # the testing kit's sshd bed: SSH by purpose, never run by the core
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if "ssh" in line.lower() and not any(re.search(p, line) for p in ALLOWED_SSH_LINES):
                offending.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offending, "SSH-specific code in nexus_core/ (move it to nexus-ssh):\n" + "\n".join(offending)


def test_every_allowed_ssh_line_is_still_needed():
    text = "\n".join(
        p.read_text(encoding="utf-8") for p in (ROOT / "nexus_core").rglob("*.py") if p.name != "sshbed.py"
    )
    unused = [p for p in ALLOWED_SSH_LINES if not re.search(p, text)]
    assert not unused, f"remove these entries from ALLOWED_SSH_LINES: {unused}"
