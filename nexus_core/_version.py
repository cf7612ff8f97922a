"""Version of the nexus-core distribution and of the plugin API it offers."""

__version__ = "0.1.0"

#: Version of the public plugin API (hooks, Executor/Strategy interfaces, events).
#: A plugin declares ``NEXUS_API_VERSION`` in its entry module; a different major
#: number is refused with a message that names the plugin and both versions.
API_VERSION = 1
