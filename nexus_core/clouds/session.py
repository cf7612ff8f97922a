"""Controllers for a command or a run: providers created from the nexusfile's declarations.

:class:`CloudSession` builds one :class:`~nexus_core.clouds.controller.Controller` per
provider (declared with ``cloud(...)``, or named on the command line with its defaults),
with the agent cluster's address and certificates when an agent transport offers them
(``cloud_cluster`` on its executor class), and closes them all at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from nexus_core.api import CloudCluster, CloudContext, CloudError
from nexus_core.clouds import MANUAL, defaults, resolved
from nexus_core.clouds.controller import DEFAULT_RATE, Controller, bootstrap_script

if TYPE_CHECKING:
    from nexus_core.events import Event
    from nexus_core.model import Project
    from nexus_core.registry import Registry


def used_file() -> str:
    """Where this machine remembers the providers ``nexus cloud scale`` used (for status/reap)."""
    from nexus_core.state.paths import state_dir

    return os.path.join(state_dir(), "cloud-providers.json")


def remembered() -> list[str]:
    """Providers ``nexus cloud scale`` used on this machine."""
    try:
        with open(used_file(), encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return []
    return [str(n) for n in data] if isinstance(data, list) else []


def remember(names: Iterable[str]) -> None:
    """Add providers to :func:`remembered` (best effort)."""
    known = list(dict.fromkeys([*remembered(), *names]))
    with contextlib.suppress(OSError):
        os.makedirs(os.path.dirname(used_file()), exist_ok=True)
        with open(used_file(), "w", encoding="utf-8") as fh:
            json.dump(known, fh)


class CloudSession:
    """The controllers of one command or run (``with CloudSession(...) as s:``)."""

    def __init__(
        self,
        registry: Registry,
        project: Project | None,
        *,
        run_id: str = MANUAL,
        emit: Callable[[Event], None] | None = None,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        self.registry = registry
        self.project = project
        self.config: Mapping[str, Any] = dict(project.config) if project is not None else {}
        self.run_id = run_id
        self.emit = emit
        self.warn = warn or (lambda _m: None)
        self._controllers: dict[str, Controller] = {}
        self._cluster: list[CloudCluster | None] = []

    def __enter__(self) -> CloudSession:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @property
    def declared(self) -> list[str]:
        """Providers the nexusfile declares, in order."""
        return list(self.project.clouds) if self.project is not None else []

    def settings(self, provider: str) -> dict[str, Any]:
        """The resolved settings of ``provider`` (its declaration, else its defaults)."""
        if self.project is not None and provider in self.project.clouds:
            return resolved(self.registry, self.project.clouds[provider])
        return defaults(self.registry, provider)

    def cluster(self) -> CloudCluster | None:
        """The agent cluster instances join (None when no agent transport is installed)."""
        if not self._cluster:
            found: CloudCluster | None = None
            if "agent" in self.registry.executors:
                make = getattr(self.registry.executors["agent"], "cloud_cluster", None)
                if callable(make):
                    found = make(self.config)
            self._cluster.append(found)
        return self._cluster[0]

    def address(self) -> str:
        """The cluster's address (``config(cluster=...)``, ``NEXUS_CLUSTER``, or the agent plugin's)."""
        view = self.cluster()
        return str(
            (view.address if view is not None else "")
            or self.config.get("cluster")
            or os.environ.get("NEXUS_CLUSTER")
            or ""
        )

    def controller(self, provider: str) -> Controller:
        """The controller of ``provider`` (created once); CloudError when nobody provides it."""
        found = self._controllers.get(provider)
        if found is not None:
            return found
        if provider not in self.registry.cloud_providers:
            why, hint = self.registry.missing("cloud provider", provider, f"the {provider!r} cloud provider")
            raise CloudError(f"no {provider!r} cloud provider is " + (f"loaded: {why}" if why else "installed"),
                             hint, exit_code=2)  # fmt: skip
        cls = self.registry.cloud_providers[provider]
        settings = self.settings(provider)
        view = self.cluster()
        instance = cls(CloudContext(config=self.config, settings=settings, root=self.project.root if self.project
                                    else ".", warn=self.warn))  # fmt: skip
        found = Controller(
            instance,
            settings,
            cluster=self.address(),
            run_id=self.run_id,
            credentials=view.credentials if view is not None else None,
            emit=self.emit,
            warn=self.warn,
            rate=str(self.config.get("cloud_api_rate") or DEFAULT_RATE),
        )
        self._controllers[provider] = found
        return found

    def bootstrap(self, provider: str) -> Callable[[str, Mapping[str, str]], str]:
        """The boot script maker for ``provider``'s instances (see controller.bootstrap_script)."""
        settings = self.settings(provider)
        address = self.address()

        def make(name: str, credentials: Mapping[str, str]) -> str:
            return bootstrap_script(name, credentials, cluster=address, tags=tuple(settings.get("tags") or ()),
                                    max_runtime=float(settings.get("max_runtime") or 3600))  # fmt: skip

        return make

    def close(self) -> None:
        """Close every provider and the cluster connection."""
        for c in self._controllers.values():
            with contextlib.suppress(Exception):
                c.provider.close()
        for view in self._cluster:
            if view is not None:
                with contextlib.suppress(Exception):
                    view.close()
