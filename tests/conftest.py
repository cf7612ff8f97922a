"""Settings shared by every test under ``tests/``."""

from hypothesis import settings

# Hypothesis fails an example that takes longer than 200 ms by default: a timing assertion,
# which on a shared 2-core machine under load fails for reasons that are not the code's.
# Timings are measured in bench/, never asserted in tests.
settings.register_profile("nexus", deadline=None)
settings.load_profile("nexus")
