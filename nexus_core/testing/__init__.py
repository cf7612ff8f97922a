"""The testing kit for plugin authors, and an opt-in pytest plugin.

Enable the fixtures with ``-p nexus_core.testing`` (or ``pytest_plugins = ["nexus_core.testing"]``)::

    def test_my_executor(nexus_project):
        nexus_project.write('''
            from nexus_core import task, run
            @task
            def hello():
                run("echo hi")
        ''')
        result = nexus_project.run("run", "hello", "--format", "json")
        assert result.code == 0
        assert result.task_status("hello") == "ok"

The project is isolated from the caller's environment: its own XDG folders (so no user
policy file applies), and ``NEXUS_CONFIG``, ``NEXUS_LOAD_PLUGINS`` and ``NEXUS_POLICY_FILE``
are not inherited. Use :meth:`NexusProject.policy` to test your plugin under a policy.

The kit's parts (docs/plugins/testing.md):

- :mod:`nexus_core.testing.project`: :class:`NexusProject` and :class:`Outcome` (the real CLI
  in a subprocess); the ``nexus_project`` fixture (:mod:`nexus_core.testing.fixtures`).
- :mod:`nexus_core.testing.conformance`: :class:`ExecutorConformance`, the test class every
  executor's tests subclass (streaming, exit codes, timeouts, cancel levels, sudo, env, cwd...).
- :mod:`nexus_core.testing.sshbed`: real OpenSSH servers on loopback addresses, as test hosts.

Importing this package does not import pytest (``sshbed`` serves scripts too); the fixtures
and the conformance suite are imported when used.
"""

from __future__ import annotations

from nexus_core.lazy import lazy_getattr
from nexus_core.testing.project import ISOLATED_VARIABLES, NexusProject, Outcome

__all__ = ["ISOLATED_VARIABLES", "ExecutorConformance", "NexusProject", "Outcome", "nexus_project"]

#: Registers the fixtures when this package is a pytest plugin (``-p nexus_core.testing``).
pytest_plugins = ["nexus_core.testing.fixtures"]

_LAZY = {
    "nexus_project": "nexus_core.testing.fixtures",
    "ExecutorConformance": "nexus_core.testing.conformance",
}


# The pytest-based parts (fixture, conformance suite), imported on first access.
__getattr__ = lazy_getattr("nexus_core.testing", _LAZY, globals())
