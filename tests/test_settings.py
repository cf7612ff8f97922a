"""Config files (.nexus/config.toml, $XDG_CONFIG_HOME/nexus/config.toml), NEXUS_<KEY> variables
and `nexus config show`, through the real CLI."""

from __future__ import annotations

from pathlib import Path

from nexus_core.testing import NexusProject

NEXUSFILE = """
from nexus_core import config, run, task
config(ssh_port=2200)

@task
def hello():
    run("echo hi")
"""


def user_file(project: NexusProject, text: str) -> Path:
    path = Path(project.env["XDG_CONFIG_HOME"]) / "nexus" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def settings(project: NexusProject, *args: str, **env: str) -> dict[str, dict[str, object]]:
    out = project.run("config", "show", "--format", "json", *args, env=env)
    assert out.code == 0, out
    return {s["key"]: s for s in out.json()["settings"]}


def test_precedence_env_over_nexusfile_over_project_over_user(nexus_project: NexusProject):
    nexus_project.write(NEXUSFILE)
    user = user_file(nexus_project, 'ssh_user = "alice"\nparallel_limit = 3\nssh_port = 1\nshell = "/bin/bash"\n')
    nexus_project.write('# team defaults\nssh_user = "bob"\nssh_port = 2\n', name=".nexus/config.toml")
    found = settings(nexus_project, NEXUS_SHELL="/bin/dash")
    assert found["parallel_limit"] == {"key": "parallel_limit", "value": 3, "source": "user file", "where": f"{user}:2"}
    assert found["ssh_user"]["value"] == "bob" and found["ssh_user"]["source"] == "project file"
    assert found["ssh_user"]["where"].endswith(".nexus/config.toml:2")
    assert found["ssh_port"]["value"] == 2200 and found["ssh_port"]["source"] == "nexusfile"
    assert found["shell"] == {"key": "shell", "value": "/bin/dash", "source": "environment", "where": "NEXUS_SHELL"}
    assert found["ssh_host_key_verification"]["source"] == "built-in"
    assert (found["log_level"]["value"], found["log_level"]["source"]) == ("warning", "built-in")  # what applies
    text = nexus_project.run("config", "show")
    assert text.code == 0, text
    assert "precedence:   command line > environment" in text.stdout
    assert any(
        line.startswith("ssh_user") and "bob" in line and "project file" in line for line in text.stdout.splitlines()
    )


def test_files_set_option_defaults_and_config_keys(nexus_project: NexusProject):
    nexus_project.write(NEXUSFILE)
    user_file(nexus_project, 'format = "json"\nshell = "/bin/sh"\n')
    out = nexus_project.run("run", "hello")
    assert out.code == 0, out
    assert '"event": "pipeline.stop"' in out.stdout  # json by default now
    assert '"event"' not in nexus_project.run("run", "hello", "--format", "text").stdout  # the CLI wins
    assert '"event"' not in nexus_project.run("run", "hello", env={"NEXUS_FORMAT": "text"}).stdout


def test_bad_files_and_variables_are_clear_errors(nexus_project: NexusProject):
    nexus_project.write(NEXUSFILE)
    path = nexus_project.write("# x\nparalel_limit = 3\n", name=".nexus/config.toml")
    out = nexus_project.run("run", "hello")
    assert out.code == 2, out
    assert "unknown key 'paralel_limit'" in out.stderr and f"{path}:2" in out.stderr
    assert "did you mean 'parallel_limit'?" in out.stderr
    nexus_project.write("ssh_user = [\n", name=".nexus/config.toml")
    bad = nexus_project.run("config", "show")
    assert bad.code == 2 and "invalid TOML" in bad.stderr and "Traceback" not in bad.stderr
    nexus_project.write("parallel_limit = 0\n", name=".nexus/config.toml")
    low = nexus_project.run("run", "hello")
    assert low.code == 2 and "parallel_limit must be >= 1" in low.stderr and f"{path}:1" in low.stderr
    nexus_project.write("audit = 5\n", name=".nexus/config.toml")  # said "unknown key" and listed 80 keys
    section = nexus_project.run("run", "hello")
    assert section.code == 2 and "audit must be a table ([audit.sinks.NAME] ...), not 5" in section.stderr, section
    assert "known keys" not in section.stderr
    (nexus_project.root / ".nexus" / "config.toml").unlink()
    env = nexus_project.run("run", "hello", env={"NEXUS_PARALLEL_LIMIT": "many"})
    assert env.code == 2 and "environment variable NEXUS_PARALLEL_LIMIT" in env.stderr
