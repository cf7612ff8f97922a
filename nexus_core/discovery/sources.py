"""The built-in host source: ``discover("file", path=..., group=None)`` over an inventory file."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from nexus_core.api import DiscoveredHost, DiscoveryError, HostSource
from nexus_core.discovery.inventory import Inventory, InventoryError, read_inventory
from nexus_core.options import Option, suggest


class FileSource(HostSource):
    """Hosts of an inventory file: Nexus's TOML, or Ansible's INI or YAML (see ``docs/inventories.md``).

    ``path`` is relative to the nexusfile's folder; ``group`` picks one group (its child
    groups included), every host of the file when None.
    """

    name: ClassVar[str] = "file"
    filters: ClassVar[tuple[Option, ...]] = (
        Option("path", (str,), None, "the inventory file (inventory.toml, hosts.ini, hosts.yml)"),
        Option("group", (str,), None, "one group of the file (default: every host)"),
    )

    def _read(self, filters: Mapping[str, Any]) -> tuple[Inventory, str | None]:
        path = filters.get("path")
        if not isinstance(path, str) or not path:
            raise DiscoveryError(
                'the "file" source needs path=', 'write discover("file", path="inventory.toml")', exit_code=2
            )
        full = path if os.path.isabs(path) else os.path.join(self.context.root, path)
        try:
            found = read_inventory(full)
        except InventoryError as exc:
            raise DiscoveryError(exc.message, exc.hint, exit_code=2, problems=exc.problems) from None
        group = filters.get("group")
        if group is not None and group not in found.groups:
            close = suggest(group, found.groups)
            raise DiscoveryError(
                f"the inventory file {path} has no group {group!r}",
                f"did you mean {close!r}?" if close else "its groups: " + (", ".join(found.groups) or "none"),
                exit_code=2,
            )
        return found, group

    def check(self, filters: Mapping[str, Any]) -> list[str]:
        """The file must exist and be valid, the group must be one of it (raises for the file's problems)."""
        self._read(filters)
        return []

    def discover(self, filters: Mapping[str, Any]) -> Sequence[DiscoveredHost]:
        """The hosts of the group (or of the whole file), settings and variables resolved."""
        found, group = self._read(filters)
        return found.select(group)
