"""The ``azure_log_analytics`` audit sink: Azure Monitor's HTTP Data Collector API.

Options: ``workspace_id``, ``shared_key`` or ``shared_key_env`` (the workspace's primary or
secondary key, base64), ``log_type`` (the custom log's name, ``NexusAudit``: records land in
``NexusAudit_CL``), ``endpoint`` (default ``https://WORKSPACE.ods.opinsights.azure.com``),
``timeout``, ``retries``, ``retry_wait``, ``verify_tls``, ``ca_file``.

Every batch is one ``POST /api/logs?api-version=2016-04-01`` with a JSON array body, the
headers ``Log-Type``, ``x-ms-date`` (RFC 1123) and ``time-generated-field: timestamp``, and
``Authorization: SharedKey WORKSPACE:SIGNATURE`` where SIGNATURE is the base64 HMAC-SHA256,
keyed with the decoded shared key, of
``POST\\n{content length}\\napplication/json\\nx-ms-date:{date}\\n/api/logs``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Mapping, Sequence
from email.utils import formatdate
from typing import Any, ClassVar

from nexus_core.api import AuditSink, AuditSinkError
from nexus_core.audit.http import Client, secret_option
from nexus_core.options import Option

API_VERSION = "2016-04-01"
RESOURCE = "/api/logs"


def signature(workspace_id: str, shared_key: str, date: str, length: int) -> str:
    """The ``Authorization`` header value of a Data Collector request."""
    text = f"POST\n{length}\napplication/json\nx-ms-date:{date}\n{RESOURCE}"
    digest = hmac.new(base64.b64decode(shared_key), text.encode("utf-8"), hashlib.sha256).digest()
    return f"SharedKey {workspace_id}:{base64.b64encode(digest).decode()}"


class LogAnalyticsSink(AuditSink):
    """Batches of records as a custom log of a Log Analytics workspace."""

    name: ClassVar[str] = "azure_log_analytics"
    options: ClassVar[tuple[Option, ...]] = (
        Option("workspace_id", (str,), None, "the workspace (customer) ID", allow_none=False),
        Option("shared_key", (str,), None, "the workspace key, base64 (keep it in a root-owned file)"),
        Option("shared_key_env", (str,), None, "the environment variable holding the workspace key"),
        Option("log_type", (str,), "NexusAudit", "the custom log's name (letters, digits, _; up to 100)"),
        Option("endpoint", (str,), None, "the collector URL (default https://WORKSPACE.ods.opinsights.azure.com)"),
        Option("timeout", (int, float), 10.0, "seconds per request", minimum=0.1),
        Option("retries", (int,), 5, "attempts per request while the service is busy", minimum=1),
        Option("retry_wait", (int, float), 1.0, "seconds before the first retry (doubled each time)", minimum=0),
        Option("verify_tls", (bool,), True, "check the server's certificate"),
        Option("ca_file", (str,), None, "the CA bundle that signed the server's certificate"),
    )

    def open(self) -> None:
        """Check the options (the API has no health call: the first batch tells)."""
        opts = self.context.options
        self.workspace = str(opts["workspace_id"])
        self.key = secret_option(opts, "shared_key", "shared_key_env", "workspace shared key")
        try:
            base64.b64decode(self.key, validate=True)
        except (binascii.Error, ValueError):
            raise AuditSinkError("the shared key is not base64", "copy the workspace's primary key as it is") from None
        self.log_type = str(opts["log_type"])
        if not re.fullmatch(r"[A-Za-z0-9_]{1,100}", self.log_type):
            raise AuditSinkError(f"bad log_type {self.log_type!r}", "letters, digits and _ only, up to 100")
        endpoint = str(opts.get("endpoint") or f"https://{self.workspace}.ods.opinsights.azure.com")
        self.client = Client(endpoint, timeout=float(opts["timeout"]), retries=int(opts["retries"]),
                             retry_wait=float(opts["retry_wait"]), verify_tls=bool(opts["verify_tls"]),
                             ca_file=opts.get("ca_file"))  # fmt: skip

    def write(self, records: Sequence[Mapping[str, Any]]) -> None:
        """POST the batch, signed (a fresh date and signature for every attempt is not needed: one request)."""
        body = json.dumps(list(records), separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        date = formatdate(usegmt=True)
        headers = {
            "Content-Type": "application/json",
            "Log-Type": self.log_type,
            "x-ms-date": date,
            "time-generated-field": "timestamp",
            "Authorization": signature(self.workspace, self.key, date, len(body)),
        }
        resp = self.client.request("POST", f"{RESOURCE}?api-version={API_VERSION}", body, headers)
        if resp.status not in (200, 202):
            raise AuditSinkError(f"Log Analytics refused the records: HTTP {resp.status} {resp.text()}",
                                 "check the workspace ID and key")  # fmt: skip
