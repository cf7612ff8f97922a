"""``nexus plugin new NAME``: a new plugin distribution that installs, lints, type-checks and tests itself.

:func:`generate` writes the files (a pure function of the name and the core's version);
:func:`plugin_group` is the click group ``plugin`` with its command ``new``. What a
generated plugin holds, and why, is in docs/plugins/testing.md ("A new plugin").
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

from nexus_core._version import API_VERSION, __version__

if TYPE_CHECKING:
    import click

__all__ = ["TemplateError", "generate", "names", "plugin_group"]

_NAME = re.compile(r"^[a-z][a-z0-9]*(?:-[a-z0-9]+)*$")

#: The repository's ruff and mypy settings, which every generated plugin shares
#: (tests/test_plugin_template.py checks they still match the root pyproject.toml).
RUFF_LINE_LENGTH = 120
RUFF_SELECT = ("E", "F", "W", "I", "B", "UP", "BLE", "S102", "RUF")
RUFF_IGNORE = ("RUF001", "RUF002", "RUF003", "RUF012", "RUF023")


class TemplateError(ValueError):
    """The plugin cannot be generated (bad name, folder not empty); the message says how to fix it."""


def names(name: str) -> tuple[str, str, str]:
    """``(short, distribution, module)`` for NAME: ``vault`` -> ``vault``, ``nexus-vault``, ``nexus_vault``.

    NAME may carry the ``nexus-`` prefix already; it must be lower-case letters, digits and
    single dashes, starting with a letter.
    """
    short = name.strip()
    for prefix in ("nexus-", "nexus_"):
        if short.startswith(prefix):
            short = short[len(prefix) :]
    short = short.replace("_", "-")
    if not _NAME.match(short):
        raise TemplateError(
            f"invalid plugin name {name!r}: use lower-case letters, digits and single dashes, "
            f"starting with a letter (e.g. 'vault' makes the distribution nexus-vault)"
        )
    return short, f"nexus-{short}", "nexus_" + short.replace("-", "_")


def core_requirement(version: str = __version__) -> str:
    """The bounded ``nexus-core`` range a plugin built against ``version`` declares.

    Before 1.0 a minor release may change the plugin API, so ``0.1.x`` gives ``>=0.1,<0.2``;
    from 1.0 on, ``>=1.2,<2``.
    """
    major, minor = (int(p) for p in version.split(".")[:2])
    upper = f"{major}.{minor + 1}" if major == 0 else f"{major + 1}"
    return f"nexus-core>={major}.{minor},<{upper}"


def files(name: str) -> dict[str, str]:
    """Every file of the plugin ``name``: relative path -> text."""
    short, dist, module = names(name)
    values = {
        "short": short,
        "dist": dist,
        "module": module,
        "core": core_requirement(),
        "api": str(API_VERSION),
        "line_length": str(RUFF_LINE_LENGTH),
        "select": ", ".join(f'"{s}"' for s in RUFF_SELECT),
        "ignore": ", ".join(f'"{s}"' for s in RUFF_IGNORE),
        "check": f"{short}-task-docs",
    }
    out: dict[str, str] = {}
    for path, text in _FILES.items():
        rendered = textwrap.dedent(text).lstrip("\n")
        for key, value in values.items():
            rendered = rendered.replace("{{" + key + "}}", value)
        out[path.replace("{{module}}", module)] = rendered
    return out


def generate(name: str, dest: Path | str) -> list[Path]:
    """Write the plugin ``name`` into the folder ``dest`` (created; must be empty) and return its files."""
    folder = Path(dest)
    content = files(name)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise TemplateError(f"{folder} already exists and is not an empty folder: choose another place")
    written: list[Path] = []
    for rel, text in content.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def plugin_group() -> click.Group:
    """The ``nexus plugin`` command group: ``nexus plugin new NAME [--dest DIR]``."""
    import click

    @click.group("plugin")
    def plugin() -> None:
        """Create Nexus plugins."""

    @plugin.command("new")
    @click.argument("name")
    @click.option(
        "--dest",
        metavar="DIR",
        type=click.Path(file_okay=False, path_type=Path),
        help="Folder to create (default: ./nexus-NAME).",
    )
    def new(name: str, dest: Path | None) -> None:
        """Create the plugin distribution nexus-NAME: a hook, tests, lint and type settings.

        Then: cd nexus-NAME && pip install -e . pytest && pytest
        """
        try:
            _, dist, _ = names(name)
            folder = dest if dest is not None else Path(dist)
            written = generate(name, folder)
        except TemplateError as exc:
            raise click.UsageError(str(exc)) from None
        except OSError as exc:
            raise click.ClickException(f"cannot write the plugin: {exc}") from None
        click.echo(f"created {dist} in {folder} ({len(written)} files)")
        click.echo(f"next: cd {folder} && pip install -e . pytest ruff mypy && pytest && ruff check . && mypy")

    return plugin


_FILES: dict[str, str] = {
    "pyproject.toml": """
        [build-system]
        requires = ["hatchling>=1.18"]
        build-backend = "hatchling.build"

        [project]
        name = "{{dist}}"
        version = "0.1.0"
        description = "A Nexus plugin: warns in pre-flight about tasks without a docstring"
        readme = "README.md"
        requires-python = ">=3.11"
        dependencies = ["{{core}}"]

        [project.optional-dependencies]
        test = ["pytest>=8", "ruff>=0.6", "mypy>=1.10"]

        # Nexus finds the plugin through this entry point (group "nexus").
        [project.entry-points.nexus]
        {{short}} = "{{module}}.plugin"

        [tool.hatch.build.targets.wheel]
        packages = ["{{module}}"]

        [tool.pytest.ini_options]
        testpaths = ["tests"]
        addopts = "-ra --strict-markers -p nexus_core.testing"

        # Lint and type settings shared with the Nexus repository.
        [tool.ruff]
        line-length = {{line_length}}
        target-version = "py311"

        [tool.ruff.lint]
        select = [{{select}}]
        ignore = [{{ignore}}]

        [tool.ruff.lint.per-file-ignores]
        "tests/**" = ["S", "B011", "BLE"]

        [tool.mypy]
        strict = true
        python_version = "3.11"
        files = ["{{module}}", "tests"]
        """,
    "README.md": """
        # {{dist}}

        A Nexus plugin. It adds the pre-flight check
        `{{check}}`: `nexus preflight` warns about each task without a docstring (the
        docstring's first line is what `nexus list` shows next to the task).

        ## Install

        ```sh
        pip install {{dist}}
        ```

        Nexus loads it through its `nexus` entry point; `nexus plugins` lists it. Under a
        plugin policy, allow it: `allow = ["{{dist}}"]`.

        ## Develop

        ```sh
        pip install -e ".[test]"
        pytest          # the tests run the real nexus CLI (nexus_core.testing)
        ruff check . && ruff format --check .
        mypy
        ```

        The plugin declares `NEXUS_API_VERSION` in `{{module}}/plugin.py`: the plugin API
        version it was built for. Its `nexus-core` requirement is bounded to the releases
        that keep that API.
        """,
    "{{module}}/__init__.py": '''
        """{{dist}}: a Nexus plugin (entry module: :mod:`{{module}}.plugin`)."""
        ''',
    "{{module}}/py.typed": "",
    "{{module}}/plugin.py": '''
        """Entry module of {{dist}} (entry point ``nexus: {{short}}``): its hook implementations.

        Nexus imports this module at start: keep it cheap (import heavy libraries inside the
        code that needs them, not here).
        """

        from __future__ import annotations

        from collections.abc import Mapping, Sequence
        from typing import TYPE_CHECKING, Any

        from nexus_core.plugin import CheckResult, PreflightCheck, hookimpl

        if TYPE_CHECKING:
            from nexus_core.plugin import Plan

        #: The plugin API version this plugin was built for (a different major is refused).
        NEXUS_API_VERSION = {{api}}


        class TaskDocsCheck(PreflightCheck):
            """Warns about tasks without a docstring: ``nexus list`` shows nothing for them."""

            name = "{{check}}"
            category = "Tasks"
            order = 80

            def run(self, plan: Plan, options: Mapping[str, Any]) -> list[CheckResult]:
                """One warning per task of ``plan`` without a docstring, or one ok."""
                missing = [name for name, task in plan.tasks.items() if not task.doc.strip()]
                if not missing:
                    return [CheckResult(self.category, "ok", "every task has a docstring", blocking=False)]
                return [
                    CheckResult(
                        self.category,
                        "warn",
                        f"task {name!r} has no docstring",
                        blocking=False,
                        hint=f"- add a docstring to {name}(): its first line is what `nexus list` shows",
                    )
                    for name in missing
                ]


        @hookimpl
        def nexus_preflight_checks() -> Sequence[type[PreflightCheck]]:
            """The task-docs check."""
            return [TaskDocsCheck]
        ''',
    "tests/__init__.py": "",
    "tests/test_plugin.py": '''
        """{{dist}} through the real nexus CLI (the ``nexus_project`` fixture of nexus_core.testing)."""

        from __future__ import annotations

        from nexus_core.testing import NexusProject

        NEXUSFILE = """
            from nexus_core import run, task

            @task
            def documented():
                \\"\\"\\"Say hello.\\"\\"\\"
                run("echo hello")

            @task
            def bare():
                run("echo bare")
        """


        def test_nexus_lists_the_plugin(nexus_project: NexusProject) -> None:
            out = nexus_project.run("plugins", "--format", "json")
            assert out.code == 0, out
            assert "{{dist}}" in out.stdout


        def test_preflight_warns_about_a_task_without_docstring(nexus_project: NexusProject) -> None:
            nexus_project.write(NEXUSFILE)
            out = nexus_project.run("preflight", "documented", "bare", "--format=json")
            assert out.code == 0, out  # a warning does not block
            (report,) = out.of("preflight")
            ours = [c for c in report["checks"] if c["category"] == "Tasks"]
            assert [(c["status"], c["message"]) for c in ours] == [("warn", "task 'bare' has no docstring")]


        def test_the_run_itself_is_unchanged(nexus_project: NexusProject) -> None:
            nexus_project.write(NEXUSFILE)
            out = nexus_project.run("run", "bare", "--format", "json")
            assert out.code == 0, out
            assert out.task_status("bare") == "ok"
        ''',
    ".gitignore": """
        __pycache__/
        *.egg-info/
        .venv/
        dist/
        .mypy_cache/
        .pytest_cache/
        .ruff_cache/
        """,
}
