"""nexus-agent: Nexus agents on Dask distributed (mutual TLS, ``agent://`` hosts, selectors, sharding)."""
