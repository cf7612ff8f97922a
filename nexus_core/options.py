"""Option specifications for ``config()``, ``@task`` and ``run()``: names, types and ranges.

One table drives validation, "did you mean" suggestions and the reference docs.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from nexus_core.records import Record


class Option(Record):
    """One named option: its accepted types, a range/choice check and a description.

    ``cli_override``: the ``nexus run``/``preflight`` option (its long name, e.g. ``"user"``
    for ``-u/--user``) whose value overrides this config key; empty when none does. Declared
    by the option's owner, so the CLI names no plugin's keys (see :func:`config_overrides`).
    ``cli_check``: a check of the value given on the command line only (e.g. a key file must
    exist on this machine, which a nexusfile validated elsewhere need not): None when fine,
    else the problem, optionally followed by a line with the hint. ``from_env``: whether
    ``NEXUS_<KEY>`` sets this key (config files and the environment, docs/cli.md); False for
    a key whose variable already means something else to its owner. ``maximum``: the largest
    number accepted (None: no bound beyond being finite); every option counted in seconds has
    one, :data:`MAX_SECONDS` when not given (see :meth:`most`), so a typo of a few zeros is a
    validation error, not a wait that the platform's clock cannot hold.
    """

    __slots__ = (
        "name",
        "types",
        "default",
        "help",
        "choices",
        "minimum",
        "allow_none",
        "check",
        "cli_override",
        "cli_check",
        "from_env",
        "maximum",
    )
    name: str
    types: tuple[type, ...]
    default: Any
    help: str
    choices: tuple[Any, ...]
    minimum: float | None
    allow_none: bool
    check: Callable[[Any], str | None] | None
    cli_override: str
    cli_check: Callable[[Any], str | None] | None
    from_env: bool
    maximum: float | None

    def __init__(
        self,
        name: str,
        types: tuple[type, ...],
        default: Any = None,
        help: str = "",
        choices: tuple[Any, ...] = (),
        minimum: float | None = None,
        allow_none: bool = True,
        check: Callable[[Any], str | None] | None = None,
        cli_override: str = "",
        cli_check: Callable[[Any], str | None] | None = None,
        from_env: bool = True,
        maximum: float | None = None,
    ) -> None:
        self._init(
            name, types, default, help, choices, minimum, allow_none, check, cli_override, cli_check, from_env, maximum
        )

    def problem(self, value: Any) -> str | None:
        """Return why ``value`` is not acceptable for this option, or None when it is.

        Never raises, whatever ``value`` is (user objects with a broken ``__repr__`` or
        ``__eq__`` included): a wrong value is a validation problem, not a crash.
        """
        if value is None:
            return None if self.allow_none else f"{self.name} must not be None"
        if isinstance(value, bool) and bool not in self.types:
            return f"{self.name} must be {self.type_names()}, not a bool ({safe_repr(value)})"
        if not isinstance(value, self.types):
            return f"{self.name} must be {self.type_names()}, not {type(value).__name__} ({safe_repr(value)})"
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                finite = math.isfinite(float(value))
            except OverflowError:
                finite = False
            if not finite:
                return f"{self.name} must be a finite number, not {safe_repr(value)}"
        if self.choices and not any(type(value) is type(c) and value == c for c in self.choices):
            hint = suggest(str(value), [str(c) for c in self.choices]) if isinstance(value, str) else None
            extra = f"; did you mean {hint!r}?" if hint else ""
            options = ", ".join(str(c) for c in self.choices)
            return f"{self.name} must be one of {options}, not {safe_repr(value)}{extra}"
        if self.minimum is not None and isinstance(value, (int, float)) and value < self.minimum:
            return f"{self.name} must be >= {self.minimum:g}, not {safe_repr(value)}"
        most = self.most()
        if most is not None and isinstance(value, (int, float)) and value > most:
            return f"{self.name} must be at most {_number(most)}{self.unit()}, not {safe_repr(value)}"
        if self.check is not None:
            return self.check(value)
        return None

    def hint(self) -> str:
        """A one-line reminder of what the option takes, for validation hints."""
        text = f"{self.name}= takes {self.type_names()}"
        if self.choices:
            text = f"{self.name}= takes one of " + ", ".join(repr(c) for c in self.choices)
        elif self.minimum is not None and self.most() is not None:
            text += f" from {self.minimum:g} to {_number(self.most() or 0)}"
        elif self.minimum is not None:
            text += f" >= {self.minimum:g}"
        if self.help:
            text += f" ({self.help})"
        return text

    def most(self) -> float | None:
        """The largest number accepted: :attr:`maximum`, else for an option counted in seconds
        (its help says "seconds") :data:`MAX_SECONDS` and in days (it says "days") a century."""
        if self.maximum is not None:
            return self.maximum
        words = self.help.lower()
        if "second" in words and "/second" not in words:
            return MAX_SECONDS
        if "days" in words:
            return MAX_DAYS
        return None

    def unit(self) -> str:
        """`` s (N days)`` for a bound in seconds of a day or more, else ``""``."""
        most = self.most()
        if most is not None and "second" in self.help and most >= 86400:
            days = most / 86400
            return f" s ({_number(days)} day{'' if days == 1 else 's'})"
        return ""

    def type_names(self) -> str:
        """Human names of the accepted types."""
        names = {
            bool: "true/false",
            int: "an integer",
            float: "a number",
            str: "a string",
            list: "a list",
            dict: "a dict",
            tuple: "a tuple",
        }
        parts = [names.get(t, t.__name__) for t in self.types]
        if int in self.types and float in self.types:
            parts = [p for p in parts if p not in ("an integer", "a number")] + ["a number"]
        return " or ".join(dict.fromkeys(parts))


def _number(value: float) -> str:
    """``value`` for a message: ``31,536,000``, ``0.5``."""
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,g}"


def suggest(name: str, candidates: Iterable[str]) -> str | None:
    """The closest candidate to ``name`` for a "did you mean" hint, or None."""
    if not isinstance(name, str) or not name:
        return None
    matches = difflib.get_close_matches(name, [c for c in candidates if isinstance(c, str)], n=1, cutoff=0.6)
    return matches[0] if matches else None


def safe_repr(value: Any, limit: int = 80) -> str:
    """``repr(value)`` for messages: shortened, and never raising (user objects may break repr)."""
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - a user object's __repr__ can do anything
        text = f"<{type(value).__name__} object>"
    if not isinstance(text, str):  # pragma: no cover - repr() enforces str
        text = f"<{type(value).__name__} object>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


#: The types of a number of seconds or a percentage.
NUMBER = (int, float)
_NUM = NUMBER
#: The largest number of seconds an option takes (a year): beyond it a value is a typo, and
#: waits that long overflow the platform's clock (``threading`` refuses more than ~292 years).
MAX_SECONDS = 365 * 86400
#: The largest number of days an option takes (a century).
MAX_DAYS = 36_500
#: The most extra attempts ``retries=`` takes.
MAX_RETRIES = 10_000


def _str_dict(value: Any) -> str | None:
    if not all(isinstance(k, str) and isinstance(v, (str, int, float)) for k, v in value.items()):
        return "env must map names (str) to values (str, int or float)"
    for key, item in value.items():
        # Caught here, not by the executor half-way through the run ("illegal environment
        # variable name", "embedded null byte"), after earlier commands had run.
        if not key or "=" in key or "\0" in key:
            return f"env name {safe_repr(key)} is not a variable name (empty, or holds '=' or a NUL byte)"
        if "\0" in str(item):
            return f"env value of {key} holds a NUL byte, which no environment can carry"
    return None


def _not_blank(value: Any) -> str | None:
    if "\0" in str(value):
        return "the guard holds a NUL byte, which no shell command can carry"
    return "the guard must not be empty" if not str(value).strip() else None


#: A user name sudo's ``-u`` takes (and a shell word needs no quoting for).
USER_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*\$?$")


def _user_name(value: Any) -> str | None:
    if not USER_NAME.match(str(value)):
        return f"user must be a user name (letters, digits, '.', '_', '-'), not {safe_repr(value)}"
    return None


RUN_OPTIONS: dict[str, Option] = {
    o.name: o
    for o in [
        Option("sudo", (bool,), False, "run with sudo", allow_none=False),
        Option("user", (str,), None, "run as this user (through sudo)", check=_user_name),
        Option(
            "timeout",
            _NUM,
            60,
            "seconds before the command is killed",
            minimum=0,
            allow_none=False,
            maximum=MAX_SECONDS,
        ),
        Option(
            "retries", (int,), 0, "extra attempts after a failure", minimum=0, allow_none=False, maximum=MAX_RETRIES
        ),
        Option(
            "retry_delay",
            _NUM,
            1,
            "base seconds between attempts (exponential, jittered)",
            minimum=0,
            allow_none=False,
            maximum=86400,
        ),
        Option("continue_on_error", (bool,), False, "a failure does not fail the task", allow_none=False),
        Option("env", (dict,), None, "extra environment variables", check=_str_dict),
        Option("cwd", (str,), None, "working directory (relative to the nexusfile's folder)"),
        Option("creates", (str,), None, "skip when this path exists on the host", check=_not_blank),
        Option("only_if", (str,), None, "skip unless this shell command succeeds on the host", check=_not_blank),
        Option("unless", (str,), None, "skip when this shell command succeeds on the host", check=_not_blank),
    ]
}

#: Shards of one task at most: each is a command on an agent and a row of the plan (10**9 passed
#: validation, then the planner grew to 4 GB).
MAX_SHARDS = 100_000

#: The core's ``@task`` options. Options a strategy reads (``batch``, ``canary_hosts``...)
#: are declared by the strategy (``Strategy.task_options``) and join these in the registry.
TASK_OPTIONS: dict[str, Option] = {
    o.name: o
    for o in [
        Option("deps", (list, tuple, str), (), "tasks that must finish first (functions or names)"),
        Option("on", (str, list, tuple), "local", '"local", a host group, or a list of host strings'),
        Option("strategy", (str,), "parallel", "how the task's hosts are scheduled"),
        Option("timeout", _NUM, None, "seconds for the whole task on one host", minimum=0, maximum=MAX_SECONDS),
        Option("idempotent", (bool,), True, "safe to re-run on resume"),
        Option("default", (bool,), False, "run by `nexus run` when no task is named", allow_none=False),
        Option("parallel", (str,), None, '"sharded": split the task into shards= parts', choices=("sharded",)),
        Option(
            "shards",
            (int,),
            None,
            'with parallel="sharded": how many shards (default: one per host)',
            minimum=1,
            maximum=MAX_SHARDS,
        ),
        Option("approval", (str,), None, '"required": another identity must approve each run', choices=("required",)),
        Option("change_window", (str,), None, "run only inside this change_window(...) (see docs/compliance.md)"),
    ]
}


def rate_problem(rate: str) -> str | None:
    """Why ``rate`` is no usable ``config(cloud_api_rate=...)`` (None: it is one)."""
    from limits import parse

    try:
        item = parse(rate)
    except ValueError:
        return f"cloud_api_rate={rate!r} is not a rate"
    if item.amount < 1:
        return f"cloud_api_rate={rate!r} allows no call at all"
    return None


def _rate(value: Any) -> str | None:
    """A ``limits`` rate of at least one call (``10/second``), checked when the nexusfile is."""
    why = rate_problem(str(value))
    return f'{why}: write a count per period, e.g. "10/second" or "100/minute"' if why else None


CONFIG_OPTIONS: dict[str, Option] = {
    o.name: o
    for o in [
        Option("parallel_limit", (int,), 10, "tasks running at once", minimum=1, cli_override="parallel_limit"),
        Option("forks", (int,), None, "hosts of one task running at once (default parallel_limit)", minimum=1),
        Option("log_level", (str,), "warning", "log level", choices=("debug", "info", "warning", "error")),
        Option("shell", (str,), "/bin/sh", "shell for local commands"),
        Option(
            "interrupt_grace",
            _NUM,
            10,
            "seconds between SIGINT, SIGTERM and SIGKILL after Ctrl+C",
            minimum=0,
            maximum=86400,
        ),
        Option("terminate_grace", _NUM, 30, "the same after SIGTERM (seconds)", minimum=0, maximum=86400),
        Option(
            "state_retention_days",
            _NUM,
            7,
            "days the status files of abandoned runs stay on hosts",
            check=lambda v: None if v > 0 else "state_retention_days must be more than 0",
        ),
        Option("default", (str,), None, "task run by `nexus run` when no task is named"),
        Option("log_max_bytes", (int,), 1_000_000, "output kept per task and host for `nexus logs`", minimum=0),
        Option(
            "spool_max_bytes",
            (int,),
            4 << 20,
            "disk each command's output spool may use on a host while the command runs",
            minimum=256 << 10,
        ),
        Option(
            "log_retention_days",
            _NUM,
            14,
            "days the logs and records of a finished run are kept (0: forever)",
            minimum=0,
        ),
        # secrets (nexus_core.secrets): where secret("NAME") looks, the local store's keyfile, reminders
        Option("secret_backend", (str,), "local", 'where secret("NAME") looks: "local" or a plugin\'s backend'),
        Option("secret_keyfile", (str,), None, "keyfile that opens the local secret stores (relative: to the project)"),
        Option("key_rotation_reminder", _NUM, 90, "warn when a store's master key is older (days; 0: off)", minimum=0),
        Option(
            "secret_rotation_reminder", _NUM, 30, "warn when a secret a run uses is older (days; 0: off)", minimum=0
        ),
        Option("check_rotation_on_run", (bool,), True, "give the rotation warnings on `nexus run`"),
        Option(
            "cloud_api_rate",
            (str,),
            "10/second",
            "calls per period to a cloud provider's API (a `limits` rate: 10/second, 100/minute)",
            check=_rate,
        ),
        Option(
            "discovery_ttl",
            _NUM,
            0,
            "seconds discovered hosts are reused from the state database (0: discover on every run)",
            minimum=0,
        ),
        Option(
            "artifact_retention",
            _NUM,
            0,
            "days the artifacts of a successful run are kept (0: removed when it succeeds)",
            minimum=0,
        ),
        Option("force_handlers", (bool,), False, "run notified handlers on a host even after a failure there"),
    ]
}


def config_overrides(options: Mapping[str, Option], **given: Any) -> dict[str, Any]:
    """The config keys that CLI options override: ``{key: value}`` for each given value.

    ``given`` maps a CLI option's long name (``user``, ``identity``, ``parallel_limit``) to
    its value (None when not given). Each is routed to the config key whose
    :attr:`Option.cli_override` names it; a value no installed part takes is dropped (``-u``
    means nothing to a run of local tasks without the plugin that declares it).
    """
    by_flag = {opt.cli_override: name for name, opt in options.items() if opt.cli_override}
    return {by_flag[flag]: value for flag, value in given.items() if value is not None and flag in by_flag}
