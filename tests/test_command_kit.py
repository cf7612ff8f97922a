"""The command kit as a plugin author uses it: the example of docs/plugins/writing-plugins.md, run."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from plugin_fixtures import Logs, make_dist, plugin_env

DOC = Path(__file__).resolve().parent.parent / "docs" / "plugins" / "writing-plugins.md"


def doc_blocks() -> tuple[str, str]:
    """The two code blocks of "Adding a command": the command module and the hook."""
    section = DOC.read_text(encoding="utf-8").split("### Adding a command", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 2, blocks
    return blocks[0], blocks[1]


@pytest.fixture
def project(nexus_project, tmp_path):
    """A project that sees a fake plugin (transport ``fake``) carrying the documented command."""
    site = tmp_path / "site"
    dist = make_dist(site, "nexus-kitdemo", features=("executor",))
    command, hook = doc_blocks()
    (site / "nexus_fake").mkdir()
    (site / "nexus_fake" / "__init__.py").write_text("", encoding="utf-8")
    (site / "nexus_fake" / "commands.py").write_text(command, encoding="utf-8")
    with open(site / f"{dist.module}.py", "a", encoding="utf-8") as fh:
        fh.write("\n\n" + hook)
    nexus_project.env.update(plugin_env(site, Logs(tmp_path / "imports.log", tmp_path / "runs.log")))
    return nexus_project


def test_the_documented_command_plans_and_prints(project):
    project.write(
        "from nexus_core import task, run\n\n@task(on=['fake://alpha', 'local'])\ndef hello():\n    run('true')\n"
    )
    out = project.run("fake-status", "--format", "json")
    assert out.code == 0, out
    hosts = json.loads(out.stdout)["hosts"]
    assert len(hosts) == 1 and "alpha" in hosts[0], out
    text = project.run("fake-status")
    assert text.code == 0 and text.stdout.strip() == hosts[0], text


def test_the_documented_command_reports_errors_like_a_built_in_one(project):
    out = project.run("fake-status")
    assert out.code == 2 and out.stderr.startswith("Error: No nexusfile found"), out
    as_json = project.run("fake-status", "--format", "json")
    assert as_json.code == 2
    assert json.loads(as_json.stdout)["headline"] == "No nexusfile found"
    project.write("from nexus_core import task, run\n\n@task\ndef hello():\n    run('true')\n")
    none = project.run("fake-status", "--format", "json")
    assert none.code == 2, none
    error = json.loads(none.stdout)
    assert (error["headline"], error["context"]) == ("No fake hosts in this plan", ["Tasks: hello"])
