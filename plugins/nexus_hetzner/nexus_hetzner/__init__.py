"""nexus-hetzner: Hetzner Cloud servers that join the Nexus agent cluster (``cloud("hetzner", ...)``)."""
