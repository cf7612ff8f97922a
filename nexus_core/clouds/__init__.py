"""Cloud bursting: ``cloud(provider, ...)`` declarations, their settings and their validation.

A provider (a :class:`nexus_core.api.CloudProvider` registered through
``nexus_cloud_providers``) only starts, lists and terminates machines; everything that
makes bursting safe lives here, once for every provider: the common settings, the hard
cost limits (:mod:`nexus_core.clouds.controller`), the ownership tags, the retries, rate
limit and circuit breaker around provider calls, and the autoscaling policy
(:mod:`nexus_core.clouds.autoscale`). Nothing here imports a provider until it is used.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from nexus_core.model import CloudSpec, Problem, Project
from nexus_core.options import Option, suggest

if TYPE_CHECKING:
    from nexus_core.registry import Registry

#: Tag keys the core puts on every resource it asks a provider for.
TAG_MANAGED = "nexus:managed"
TAG_CLUSTER = "nexus:cluster"
TAG_RUN = "nexus:run"
TAG_OWNER = "nexus:owner"
TAG_PROVIDER = "nexus:provider"
TAG_AGENT_TAGS = "nexus:agent-tags"
#: The run of instances started by ``nexus cloud scale`` (no run owns them; reap keeps them).
MANUAL = "manual"


def _count(value: Any) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return None if value >= 0 else "count must be at least 0"
    if (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        and 0 <= value[0] <= value[1]
    ):
        return None
    return "count must be (MIN, MAX) with 0 <= MIN <= MAX, or one number (the maximum)"


def _tags(value: Any) -> str | None:
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) and v for v in value):
        bad = [v for v in value if "," in v or any(c.isspace() for c in v)]
        # an agent's tags are one comma-separated word list: "a,b" would join as two tags
        return f"agent tags are single words without commas or spaces, not {bad[0]!r}" if bad else None
    if isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        return None
    return 'tags must be a list of agent tags (["burst", "gpu"]) or a dict of resource tags ({"team": "ml"})'


#: The settings every ``cloud(...)`` declaration accepts, whatever the provider.
COMMON: tuple[Option, ...] = (
    Option("count", (int, tuple, list), (0, 10), "(MIN, MAX) instances the autoscaler keeps", check=_count),
    Option("idle_timeout", (int, float), 300, "seconds an instance may stay idle before it is terminated", minimum=0),
    Option("max_runtime", (int, float), 3600, "seconds after which an instance shuts itself down", minimum=1),
    Option("max_hourly_cost", (int, float), None, "hard limit: US dollars per hour for all instances", minimum=0),
    Option("max_instances", (int,), None, "hard limit: instances at once", minimum=0),
    Option("tags", (list, tuple, dict), ("burst",), "agent tags of the instances, or extra resource tags", check=_tags),
    Option("price", (int, float), None, "US dollars per hour per instance when the provider reports none", minimum=0),
    Option("scale_up_wait", (int, float), 30, "scale up when tasks wait this many seconds for an agent", minimum=0),
    Option("scale_up_queue", (int,), 4, "scale up when more commands than this wait for an agent", minimum=0),
    Option("scale_down_cooldown", (int, float), 60, "seconds after a scale-up before any scale-down", minimum=0),
    Option("autoscale_interval", (int, float), 5, "seconds between two looks of the autoscaler", minimum=0.1),
    Option("join_timeout", (int, float), 300, "seconds a run waits for new instances to join", minimum=1),
)

COMMON_NAMES = frozenset(o.name for o in COMMON)


def provider_settings(registry: Registry, provider: str) -> tuple[Option, ...]:
    """The provider's own settings, read from its registration (no import)."""
    if provider not in registry.cloud_providers:
        return ()
    found = registry.cloud_providers.entry(provider).detail("settings") or ()
    return tuple(o for o in found if isinstance(o, Option))


def resolved(registry: Registry, spec: CloudSpec) -> dict[str, Any]:
    """The declaration's settings with every default filled in."""
    out: dict[str, Any] = {o.name: o.default for o in (*COMMON, *provider_settings(registry, spec.provider))}
    out.update(spec.settings)
    count = out["count"]
    out["count"] = (0, int(count)) if isinstance(count, int) else (int(count[0]), int(count[1]))
    tags = out["tags"]
    if isinstance(tags, dict):
        out["resource_tags"], out["tags"] = dict(tags), ("burst",)
    else:
        out["resource_tags"], out["tags"] = {}, tuple(tags)
    return out


def defaults(registry: Registry, provider: str) -> dict[str, Any]:
    """The settings of a provider nobody declared (``nexus cloud scale local=2`` without a nexusfile)."""
    return resolved(registry, CloudSpec(provider, {}))


def check(project: Project, registry: Registry) -> list[Problem]:
    """Problems with the project's ``cloud(...)`` declarations (no provider is asked)."""
    out: list[Problem] = []
    for spec in project.clouds.values():
        where = spec.location
        if spec.provider not in registry.cloud_providers:
            why, hint = registry.missing("cloud provider", spec.provider, f"the {spec.provider!r} cloud provider")
            close = suggest(spec.provider, list(registry.cloud_providers))
            if close and "pip install" not in hint and "did you mean" not in hint:
                hint = f"did you mean {close!r}? ({hint})"
            state = f"is loaded: {why}" if why else "is installed"
            message = f"cloud({spec.provider!r}): no {spec.provider!r} cloud provider {state}"
            out.append(Problem(message, where, hint, "missing-plugin"))
            continue
        known = {o.name: o for o in (*COMMON, *provider_settings(registry, spec.provider))}
        for key, value in spec.settings.items():
            option = known.get(key)
            if option is None:
                close = suggest(key, known)
                out.append(
                    Problem(
                        f"cloud({spec.provider!r}) has no setting {key!r}",
                        where,
                        f"did you mean {close!r}?" if close else "settings: " + ", ".join(sorted(known)),
                        "unknown-option",
                    )
                )
                continue
            problem = option.problem(value)
            if problem:
                out.append(Problem(f"cloud({spec.provider!r}): {problem}", where, option.help, "bad-value"))
    return out


def parse_scale(words: Mapping[str, str] | list[str] | tuple[str, ...]) -> dict[str, int]:
    """``["aws=5", "local=2"]`` -> ``{"aws": 5, "local": 2}``; ValueError saying what is wrong."""
    out: dict[str, int] = {}
    for word in words:
        name, sep, number = str(word).partition("=")
        if not sep or not name or not number.strip().isdigit():
            raise ValueError(f"{word!r} is not PROVIDER=COUNT (for example aws=5)")
        out[name.strip()] = int(number)
    return out
