"""The ``splunk`` audit sink: Splunk's HTTP Event Collector (HEC).

Options: ``url`` (``https://splunk.example.com:8088``), ``token`` or ``token_env`` (the HEC
token, sent as ``Authorization: Splunk TOKEN``), ``channel`` (a GUID; one is made per run
when unset; sent as ``X-Splunk-Request-Channel``), ``ack`` (wait for indexer
acknowledgement of every batch at the end of the run: ``/services/collector/ack``),
``ack_timeout``, ``index``, ``source``, ``sourcetype``, ``timeout``, ``retries`` and
``retry_wait`` (503 "server busy" and connection errors are retried), ``verify_tls`` and
``ca_file``. ``open`` asks ``/services/collector/health``.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from nexus_core.api import AuditSink, AuditSinkError
from nexus_core.audit.http import Client, secret_option
from nexus_core.options import Option


class SplunkSink(AuditSink):
    """Batches of records as HEC events, with optional indexer acknowledgement."""

    name: ClassVar[str] = "splunk"
    options: ClassVar[tuple[Option, ...]] = (
        Option("url", (str,), None, "the HEC base URL, e.g. https://splunk.example.com:8088", allow_none=False),
        Option("token", (str,), None, "the HEC token (keep it in a root-owned file) "),
        Option("token_env", (str,), None, "the environment variable holding the HEC token"),
        Option("channel", (str,), None, "the HEC channel GUID (default: a new one per run)"),
        Option("ack", (bool,), False, "wait for indexer acknowledgement of every batch at the end of the run"),
        Option("ack_timeout", (int, float), 60.0, "seconds to wait for acknowledgements", minimum=0),
        Option("index", (str,), None, "the Splunk index (default: the token's)"),
        Option("source", (str,), "nexus", "the events' source"),
        Option("sourcetype", (str,), "nexus:audit", "the events' sourcetype"),
        Option("timeout", (int, float), 10.0, "seconds per request", minimum=0.1),
        Option("retries", (int,), 5, "attempts per request while the server is busy", minimum=1),
        Option("retry_wait", (int, float), 1.0, "seconds before the first retry (doubled each time)", minimum=0),
        Option("verify_tls", (bool,), True, "check the server's certificate"),
        Option("ca_file", (str,), None, "the CA bundle that signed the server's certificate"),
    )

    def open(self) -> None:
        """Check the token and the collector's health."""
        opts = self.context.options
        self.token = secret_option(opts, "token", "token_env", "HEC token")
        self.channel = str(opts.get("channel") or uuid.uuid4())
        self.client = Client(str(opts["url"]), timeout=float(opts["timeout"]), retries=int(opts["retries"]),
                             retry_wait=float(opts["retry_wait"]), verify_tls=bool(opts["verify_tls"]),
                             ca_file=opts.get("ca_file"))  # fmt: skip
        self.pending: set[int] = set()
        self.host = __import__("socket").gethostname()
        resp = self.client.request("GET", "/services/collector/health", headers=self._headers())
        if resp.status != 200:
            raise AuditSinkError(f"the collector is not healthy: HTTP {resp.status} {resp.text()}",
                                 "check the HEC URL and that the collector is enabled")  # fmt: skip
        # An empty batch checks the token: "No data" (400, code 5) means it was accepted.
        resp = self.client.request("POST", "/services/collector/event", b"", self._headers())
        if resp.status in (401, 403):
            raise AuditSinkError(f"HEC refused the token: HTTP {resp.status} {resp.text()}",
                                 "check the token (and that it is enabled)")  # fmt: skip

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Splunk {self.token}", "X-Splunk-Request-Channel": self.channel,
                "Content-Type": "application/json"}  # fmt: skip

    def write(self, records: Sequence[Mapping[str, Any]]) -> None:
        """POST one batch to ``/services/collector/event``; remember its ackId."""
        opts = self.context.options
        events = []
        for rec in records:
            event: dict[str, Any] = {"time": _epoch(rec), "host": self.host, "source": opts["source"],
                                     "sourcetype": opts["sourcetype"], "event": rec}  # fmt: skip
            if opts.get("index"):
                event["index"] = opts["index"]
            events.append(json.dumps(event, separators=(",", ":")))
        resp = self.client.request("POST", "/services/collector/event", "\n".join(events).encode(), self._headers())
        if resp.status != 200:
            raise AuditSinkError(f"HEC refused the events: HTTP {resp.status} {resp.text()}",
                                 "check the token, the index and the channel")  # fmt: skip
        if opts["ack"]:
            try:
                self.pending.add(int(json.loads(resp.body)["ackId"]))
            except (ValueError, KeyError, TypeError):
                hint = "enable indexer acknowledgement on the token, or set ack = false"
                raise AuditSinkError("HEC gave no ackId although ack = true", hint) from None

    def close(self) -> None:
        """Wait until every batch is acknowledged (``ack``), within ``ack_timeout``."""
        deadline = time.monotonic() + float(self.context.options["ack_timeout"])
        delay = 0.05
        while self.pending:
            body = json.dumps({"acks": sorted(self.pending)}).encode()
            resp = self.client.request("POST", f"/services/collector/ack?channel={self.channel}", body,
                                       self._headers())  # fmt: skip
            if resp.status != 200:
                raise AuditSinkError(f"HEC refused the acknowledgement query: HTTP {resp.status} {resp.text()}")
            try:
                acks = json.loads(resp.body)["acks"]
                self.pending -= {int(k) for k, v in acks.items() if v}
            except (ValueError, KeyError, TypeError, AttributeError):
                raise AuditSinkError(f"HEC answered the acknowledgement query oddly: {resp.text()}") from None
            if not self.pending:
                break
            if time.monotonic() >= deadline:
                raise AuditSinkError(f"{len(self.pending)} batch(es) not acknowledged within "
                                     f"ack_timeout={self.context.options['ack_timeout']}s",
                                     "the indexers may have lost them; check Splunk")  # fmt: skip
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


def _epoch(rec: Mapping[str, Any]) -> float:
    import datetime

    try:
        return datetime.datetime.fromisoformat(str(rec.get("timestamp", "")).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return time.time()
