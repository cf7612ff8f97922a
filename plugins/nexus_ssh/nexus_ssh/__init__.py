"""Nexus SSH executor (distribution ``nexus-ssh``).

The entry module is :mod:`nexus_ssh.plugin`; importing this package stays cheap (no
Paramiko or Fabric import until a connection is opened).
"""

__version__ = "0.1.0"
