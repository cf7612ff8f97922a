"""Jinja2 templates for ``template(...)``: rendered per host at plan time, strictly.

``StrictUndefined`` makes a misspelt variable an error instead of an empty string; errors
become validation problems that name the template's own file and line (a syntax error,
an undefined name, an exception raised while rendering), so they are fixed before
anything runs. Jinja2 is imported only when a nexusfile uses a template.
"""

from __future__ import annotations

import contextlib
import os
import re
import traceback
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any

from nexus_core.dsl import Recorder, _problem, git_branch, git_sha, hostname, timestamp
from nexus_core.model import thaw

__all__ = ["RESERVED", "context", "render"]

#: The names Nexus sets in every template: a ``vars`` key with one of them would be hidden
#: by Nexus's value, so it is refused at the ``template()`` line (see :func:`context`).
RESERVED = ("host", "task", "env", "vars", "hostname", "timestamp", "git_sha", "git_branch")

_ENVIRONMENTS: dict[str, Any] = {}

#: The run's config keys (nexusfile and command line) while hosts are planned: the login
#: user and port a host string leaves out come from its transport's ``TRANSPORT_user`` and
#: ``TRANSPORT_port`` keys.
_CONFIG: ContextVar[Mapping[str, Any] | None] = ContextVar("nexus_template_config", default=None)


def planning(config: Mapping[str, Any]) -> None:
    """Templates rendered from now on in this context (the plan being made) see ``config``
    (its ``TRANSPORT_user`` and ``TRANSPORT_port`` keys: ``host.user`` and ``host.port`` of
    hosts whose strings leave them out). Each plan sets its own before its bodies run."""
    _CONFIG.set(dict(config))


def _login(h: Any) -> dict[str, Any]:
    """``user`` and ``port`` as the host is logged in to, where the plan knows them: the host
    string's, else the config keys its transport names so (``TRANSPORT_user``,
    ``TRANSPORT_port``), the local user for ``local``. Left out when unknown (the transport's
    own client config may set them): a template using them then fails at its line saying so,
    instead of writing ``None``."""
    import jinja2

    found: dict[str, Any] = {}
    if h.is_local:
        import getpass

        found["port"] = jinja2.StrictUndefined(hint="host.port: the local machine is not reached over a port")
        with contextlib.suppress(Exception):
            found["user"] = h.user or getpass.getuser()
        return found
    config = _CONFIG.get() or {}
    user = h.user or config.get(f"{h.transport}_user")
    port = h.port or config.get(f"{h.transport}_port")
    for key, value, how in (("user", user, f"USER@HOST or config({h.transport}_user=...)"),
                            ("port", port, f"HOST:PORT or config({h.transport}_port=...)")):  # fmt: skip
        found[key] = (
            (int(value) if key == "port" and isinstance(value, int | str) else value)
            if value
            else jinja2.StrictUndefined(
                hint=f"host.{key} of {h.label} is not known when the plan is made (its transport's own "
                f"client config may set it): write {how}"
            )
        )
    return found


def context(rec: Recorder, variables: Mapping[str, Any]) -> dict[str, Any]:
    """What a template sees for the host ``rec`` is planned for: ``vars`` (also as top-level
    names; a key named as one of :data:`RESERVED` is refused by ``template()``), ``host``,
    ``task``, ``env`` and the context functions."""
    h = rec.host
    host = {
        "name": h.name,
        "address": h.name,
        **_login(h),
        "label": h.label,
        "transport": h.transport,
        "tags": list(h.tags),
        "vars": thaw(h.vars),
        "facts": thaw(h.facts),
        "attributes": {**thaw(h.facts), **thaw(h.vars)},
    }
    out: dict[str, Any] = dict(variables)
    out.update(  # the names of RESERVED, over any vars key of the same name
        {
            "vars": dict(variables),
            "host": host,
            "task": {"name": rec.task},
            "env": dict(os.environ),
            "hostname": hostname,
            "timestamp": timestamp,
            "git_sha": git_sha,
            "git_branch": git_branch,
        }
    )
    return out


def _environment(root: str) -> Any:
    env = _ENVIRONMENTS.get(root)
    if env is None:
        import jinja2

        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader([root, "/"], followlinks=True),
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
            autoescape=False,
        )
        _ENVIRONMENTS[root] = env
    return env


def render(path: str, root: str, variables: Mapping[str, Any]) -> bytes | None:
    """The template at ``path`` rendered with ``variables`` (UTF-8), or None after recording a problem."""
    import jinja2

    env = _environment(root)
    name = os.path.relpath(path, root) if path.startswith(root + os.sep) else path
    shown = os.path.relpath(path, root) if path.startswith(root + os.sep) else path
    try:
        tmpl = env.get_template(name.replace(os.sep, "/"))
        text: str = tmpl.render(**variables)
    except jinja2.UndefinedError as exc:
        _undefined(exc, path, root)
        _more_undefined(tmpl, variables, exc, path, root)
        return None
    except jinja2.TemplateSyntaxError as exc:
        where = _short(exc.filename or path, root)
        _problem(
            f"template {where}:{exc.lineno}: syntax error: {exc.message}",
            "fix the template (Jinja2 syntax: {{ name }}, {% if ... %}...{% endif %})",
            code="template-syntax",
        )
        return None
    except UnicodeDecodeError as exc:
        _problem(f"template {shown}: not UTF-8 text ({exc.reason})", "save the template as UTF-8", code="bad-source")
        return None
    except jinja2.TemplateNotFound as exc:
        _problem(f"template {shown}: included template {exc.name!r} not found",
                 "paths in {% include %} start at the nexusfile's folder", code="missing-source")  # fmt: skip
        return None
    except Exception as exc:  # noqa: BLE001 - a filter or a value raised: report, never crash
        if "Undefined" in str(exc) and _undeclared(env, variables, path, root):
            return None  # an undefined value met a filter ({{ x | tojson }}): the names are said
        file, line = _template_frame(exc, path)
        _problem(
            f"template {_short(file, root)}:{line}: {type(exc).__name__}: {exc}",
            "fix the expression on that line of the template",
            code="template-error",
        )
        return None
    return text.encode("utf-8")


#: The hint of a template's undefined name.
_UNDEFINED_HINT = "pass it in vars={...}, or give a default: {{ name | default('...') }}"


def _undefined(exc: Exception, path: str, root: str) -> None:
    """Record the problem of a template's undefined name or attribute (``exc``, Jinja's
    ``UndefinedError``), at the template's file and line."""
    import jinja2

    assert isinstance(exc, jinja2.UndefinedError)
    file, line = _template_frame(exc, path)
    said = exc.message or "undefined"
    hint = _UNDEFINED_HINT
    attr = re.search(r"has no attribute '([^']+)'", said)
    if attr is not None:  # {{ host.vars.role }}: Jinja says "'dict object' has no attribute 'role'"
        key = attr.group(1)
        said = f"{key!r} is not defined ({said})"
        hint = (f"give {key!r} where that value comes from (vars={{...}}, the host's vars in host(...) or the"
                f" inventory), or a default: {{{{ ... .{key} | default('...') }}}}")  # fmt: skip
    _problem(f"template {_short(file, root)}:{line}: {said}", hint, code="template-undefined")


#: Renders tried at most to find a template's other undefined names (see :func:`_more_undefined`).
UNDEFINED_MAX = 20


def _more_undefined(tmpl: Any, variables: Mapping[str, Any], first: Exception, path: str, root: str) -> None:
    """Record the template's other undefined names after the ``first``, so that one validation
    names them all: render again with each name found so far standing for an empty value
    (Jinja's ``ChainableUndefined``), until the template renders, fails otherwise, or after
    :data:`UNDEFINED_MAX` more names (then says that more may follow). Only the names a render
    reaches are named (a name under an ``{% if %}`` that is false is not needed); an undefined
    attribute of a value given (``host.vars.role``) is named and ends the search."""
    import jinja2

    values = dict(variables)
    name = _undefined_name(first)
    for _ in range(UNDEFINED_MAX):
        if name is None or name in values:
            return
        values[name] = jinja2.ChainableUndefined(name=name)
        try:
            tmpl.render(**values)
            return
        except jinja2.UndefinedError as again:
            name = _undefined_name(again)
            if name is None or name not in values:  # a new name, or an attribute of a value given
                _undefined(again, path, root)
        except Exception:  # noqa: BLE001 - a stand-in met a filter or an operation: nothing more to tell
            return
    _problem(f"template {_short(path, root)}: more undefined names may follow (the search stops after "
             f"{UNDEFINED_MAX + 1})", "give these, then validate again", code="template-undefined")  # fmt: skip


def _undeclared(env: Any, variables: Mapping[str, Any], path: str, root: str) -> bool:
    """Record each name the template's source uses that neither ``variables`` nor Jinja's
    globals give, at its first line (a filter that raised on an undefined value, such as
    ``tojson``, names no variable itself); False when there is none to name."""
    import jinja2
    from jinja2 import meta, nodes

    try:
        with open(path, encoding="utf-8") as f:
            ast = env.parse(f.read())
    except (OSError, UnicodeDecodeError, jinja2.TemplateError):
        return False
    names = meta.find_undeclared_variables(ast) - set(variables) - set(env.globals)
    if not names:
        return False
    lines: dict[str, int] = {}
    for node in ast.find_all(nodes.Name):
        if node.name in names and node.ctx == "load":
            lines.setdefault(node.name, node.lineno)
    for name in sorted(names, key=lambda n: (lines.get(n, 0), n)):
        _problem(f"template {_short(path, root)}:{lines.get(name, 0)}: {name!r} is undefined",
                 _UNDEFINED_HINT, code="template-undefined")  # fmt: skip
    return True


def _undefined_name(exc: Exception) -> str | None:
    """The top-level name Jinja's ``UndefinedError`` says is undefined (None for an attribute)."""
    found = re.fullmatch(r"'([^']+)' is undefined", getattr(exc, "message", None) or "")
    return found.group(1) if found else None


def _short(path: str, root: str) -> str:
    return os.path.relpath(path, root) if path.startswith(root + os.sep) else path


def _template_frame(exc: BaseException, default: str) -> tuple[str, int]:
    """The innermost frame of a template in ``exc``'s traceback: (file, line)."""
    found = (default, 0)
    for frame in traceback.extract_tb(exc.__traceback__):
        if (frame.filename and frame.filename.endswith((".j2", ".jinja", ".jinja2", ".tmpl", ".tpl"))) or (
            frame.filename == default
        ):
            found = (frame.filename, frame.lineno or 0)
    if found[1] == 0:  # a template with another suffix: the last frame outside Python files
        for frame in traceback.extract_tb(exc.__traceback__):
            if frame.filename and not frame.filename.endswith(".py") and os.path.exists(frame.filename):
                found = (frame.filename, frame.lineno or 0)
    return found
