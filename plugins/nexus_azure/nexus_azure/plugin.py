"""Entry module of the ``nexus-azure`` plugin (entry point ``nexus: azure``).

Cheap to import: the host source, the executor and the pre-flight check are registered as
``"module:Class"`` and imported (with the Azure SDK) only when a plan uses them.
"""

from __future__ import annotations

from collections.abc import Sequence

from nexus_core.plugin import Option, Registration, hookimpl

#: The core plugin API version this plugin was built for.
NEXUS_API_VERSION = 1


@hookimpl
def nexus_config_options() -> Sequence[Option]:
    """The ``azure_*`` keys: subscription, authentication, endpoint, connection, Run Command, limits."""
    from nexus_azure.options import config_options

    return config_options()


@hookimpl
def nexus_host_sources() -> Sequence[Registration]:
    """``discover("azure", **filters)``: VMs (Resource Graph, then ARM), or scale set instances."""
    from nexus_azure.options import filter_options

    return [Registration("azure", "nexus_azure.source:AzureSource", {"filters": filter_options()})]


@hookimpl
def nexus_executors() -> Sequence[Registration]:
    """``azure://VM`` hosts run their commands through Run Command."""
    return [Registration("azure", "nexus_azure.executor:AzureExecutor")]


#: ``cloud("azure-vmss", ...)``'s own settings (the names are promises).
VMSS_SETTINGS: tuple[Option, ...] = (
    Option("subscription", (str,), None, "the scale set's subscription (default: azure_subscription)"),
    Option("resource_group", (str,), None, "the scale set's resource group (required)"),
    Option("scale_set", (str,), None, "the scale set's name (required)"),
)


@hookimpl
def nexus_cloud_providers() -> Sequence[Registration]:
    """``cloud("azure-vmss", ...)``: a VM Scale Set's capacity (``nexus cloud scale azure-vmss=N``)."""
    return [Registration("azure-vmss", "nexus_azure.provider:VmssProvider", {"settings": VMSS_SETTINGS})]


@hookimpl
def nexus_preflight_checks() -> Sequence[Registration]:
    """``nexus preflight``: Azure authentication, and Run Command availability per ``azure://`` host."""
    return [Registration("azure", "nexus_azure.preflight:AzurePreflight", {"category": "Azure", "order": 20})]
