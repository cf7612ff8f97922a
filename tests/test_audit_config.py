"""``config.changed`` audit records: what Nexus changes on the user's behalf, through the real
CLI into a file sink, with names and never a secret's value."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from nexus_core.testing import NexusProject

KEY = base64.b64encode(bytes(range(32))).decode()
VALUE = "s3cr3t-value-never-logged"


def test_secret_set_and_delete_are_audited_without_the_value(nexus_project: NexusProject, tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    config = Path(nexus_project.env["XDG_CONFIG_HOME"]) / "nexus" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(f'[audit.sinks.trail]\ntype = "file"\npath = "{log}"\n', encoding="utf-8")
    nexus_project.env["NEXUS_MASTER_KEY"] = KEY
    nexus_project.write("from nexus_core import task\n\n@task\ndef noop():\n    pass\n")
    for _ in range(2):
        out = nexus_project.run("secret", "set", "DB_PASSWORD", input=VALUE + "\n")
        assert out.code == 0, out
    out = nexus_project.run("secret", "delete", "DB_PASSWORD")
    assert out.code == 0, out
    text = log.read_text(encoding="utf-8")
    assert VALUE not in text
    changes = [r for r in map(json.loads, text.splitlines()) if r.get("event") == "config.changed"]
    assert [(r["change_type"], r["diff"]) for r in changes] == [
        ("secret set", {"secrets": {"added": ["DB_PASSWORD"]}}),
        ("secret set", {"secrets": {"replaced": ["DB_PASSWORD"]}}),
        ("secret delete", {"secrets": {"removed": ["DB_PASSWORD"]}}),
    ], changes
    assert all(r["target"].endswith("secrets.enc") and r["user"] and r["correlation_id"] for r in changes), changes
    assert nexus_project.run("audit", "verify", str(log)).code == 0


def test_a_file_sink_under_a_path_that_is_a_file_says_so(nexus_project: NexusProject, tmp_path: Path) -> None:
    """The sink's folder path runs through a regular file: the error said only 'File exists'."""
    blocker = tmp_path / "logs"
    blocker.write_text("not a folder\n")
    config = Path(nexus_project.env["XDG_CONFIG_HOME"]) / "nexus" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(f'[audit.sinks.trail]\ntype = "file"\nrequired = true\npath = "{blocker}/audit/audit.log"\n')
    nexus_project.write('from nexus_core import run, task\n\n@task\ndef t():\n    run("true")\n')
    out = nexus_project.run("run", "t")
    assert out.code == 2, out
    assert f"{blocker} is a file, not a folder" in out.stderr and "File exists" not in out.stderr, out


def test_a_missing_salt_file_names_it_and_the_file_declaring_the_sink(
    nexus_project: NexusProject, tmp_path: Path
) -> None:
    """It said "declared in SALT_PATH": the declaration is in the config file."""
    salt = tmp_path / "keys" / "audit.salt"
    config = Path(nexus_project.env["XDG_CONFIG_HOME"]) / "nexus" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(
        f'[audit.sinks.trail]\ntype = "file"\nrequired = true\npath = "{tmp_path}/audit.log"\nsalt_file = "{salt}"\n'
    )
    nexus_project.write('from nexus_core import run, task\n\n@task\ndef t():\n    run("true")\n')
    out = nexus_project.run("run", "t")
    assert out.code == 2, out
    assert f"the salt file {salt} of audit sink 'trail' does not exist" in out.stderr, out
    assert str(config) in out.stderr, out
