"""Rendering: the event-stream renderers (text tree, verbose, quiet, JSON), errors and plans."""
