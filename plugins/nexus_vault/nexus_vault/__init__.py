"""Nexus secret backend on HashiCorp Vault (distribution ``nexus-vault``).

The entry module is :mod:`nexus_vault.plugin`; importing this package stays cheap (hvac,
requests and cryptography are imported when a run first resolves a ``vault:`` secret).
"""

__version__ = "0.1.0"
