"""The contracts a plain run does not use: plugin kinds (secrets, discovery, audit, clouds) and
the executors' file types.

Internal: plugins import these names from :mod:`nexus_core.plugin` (or ``nexus_core.api``),
which load these modules on first use.
"""
