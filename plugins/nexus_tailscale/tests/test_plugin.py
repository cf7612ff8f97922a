"""The plugin as the core loads it: cheap entry module, config keys, the registered source."""

from __future__ import annotations

import subprocess
import sys

from nexus_core.testing import NexusProject


def test_the_entry_module_imports_nothing_heavy():
    code = (
        "import sys, nexus_tailscale.plugin as p; p.nexus_config_options(); p.nexus_host_sources(); "
        "heavy = [m for m in ('nexus_tailscale.source', 'nexus_tailscale.api', 'limits', 'pybreaker', "
        "'tenacity', 'urllib.request') if m in sys.modules]; assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_cli_backend_does_not_import_the_http_stack(tmp_path):
    from nexus_tailscale.testing import write_fake_cli

    script = write_fake_cli(tmp_path)
    code = (
        "import sys; from nexus_core.plugin import HostSourceContext; "
        "from nexus_tailscale.source import TailscaleSource; "
        f"s = TailscaleSource(HostSourceContext(config={{'tailscale_cli': {str(script)!r}}})); "
        "assert s.discover({'tags': ['web']}); "
        "heavy = [m for m in ('limits', 'pybreaker', 'tenacity', 'urllib.request') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_plugins_lists_the_source_and_the_keys(nexus_project: NexusProject):
    out = nexus_project.run("plugins", "--format", "json")
    assert out.code == 0, out
    row = next(p for p in out.json()["plugins"] if p["distribution"] == "nexus-tailscale")
    assert row["hooks"] == ["nexus_config_options", "nexus_host_sources"]


def test_a_mistyped_backend_is_a_validation_error(nexus_project: NexusProject):
    nexus_project.write(
        """
        from nexus_core import config, run, task
        config(tailscale_backend="apii")

        @task
        def hello():
            run("true")
        """
    )
    out = nexus_project.run("validate")
    assert out.code == 2, out
    assert "tailscale_backend" in out.stderr + out.stdout and "'api'" in out.stderr + out.stdout


def test_one_successful_api_request_imports_no_retry_limiter_or_breaker(fake_api):
    code = (
        "import sys; from nexus_core.plugin import HostSourceContext; "
        "from nexus_tailscale.source import TailscaleSource; "
        f"cfg = {{'tailscale_api_url': {fake_api.url!r}, 'tailscale_api_key': 'tskey-api-test'}}; "
        "assert TailscaleSource(HostSourceContext(config=cfg)).discover({'tags': ['web']}); "
        "heavy = [m for m in ('limits', 'pybreaker', 'tenacity', 'asyncio') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_discover_tailscale_without_the_plugin_loaded_names_the_package(nexus_project: NexusProject):
    """Installed but not loaded (NEXUS_LOAD_PLUGINS): the message names nexus-tailscale, exit 2.

    (Not installed at all, the hint is ``pip install nexus-tailscale``: tests/test_discovery.py.)
    """
    nexus_project.write(
        """
        from nexus_core import discover, hosts, run, task
        hosts("web", discover("tailscale", tags=["tag:web"]))

        @task(on="web")
        def hello():
            run("true")
        """
    )
    for command in (("validate",), ("run", "hello"), ("hosts", "list")):
        out = nexus_project.run(*command, env={"NEXUS_LOAD_PLUGINS": "nexus-ssh"})
        assert out.code == 2, out
        assert "no 'tailscale' host source is loaded: nexus-tailscale is installed but" in out.stderr, out
        assert "Traceback" not in out.stderr
