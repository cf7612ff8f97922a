"""Durable run state: the SQLite store, its event-stream recorder, and resume decisions."""
