"""nexus-azure: Azure virtual machines for Nexus.

``discover("azure", ...)`` finds VMs over Azure Resource Graph (with the ARM API as a
fallback for VMs too new for the graph) and VM Scale Set instances; the ``azure``
transport runs commands through Run Command, so VMs need no inbound SSH. The entry module
is :mod:`nexus_azure.plugin`; docs/plugins/azure.md is the user guide.
"""

__version__ = "0.1.0"
