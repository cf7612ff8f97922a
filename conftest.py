"""Settings shared by every test of the repository (core and plugins)."""

import signal

from hypothesis import settings

# Hypothesis fails an example that takes longer than 200 ms by default: a timing assertion,
# which on a shared 2-core machine under load fails for reasons that are not the code's.
# Timings are measured in bench/, never asserted in tests.
settings.register_profile("nexus", deadline=None)
settings.load_profile("nexus")

# A shell without job control starts background commands with SIGINT ignored, and children
# inherit that: a test suite started so (`.ci/run &` from a script) would see every Ctrl+C
# test hang. Tests expect what a terminal gives, so SIGINT gets Python's default handler
# (reset to the default action in every child at exec).
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
