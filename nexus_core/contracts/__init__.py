"""The contracts of the plugin kinds a plain run does not use (secrets, discovery, audit, clouds).

Internal: plugins import these names from :mod:`nexus_core.plugin` (or ``nexus_core.api``),
which load these modules on first use.
"""
