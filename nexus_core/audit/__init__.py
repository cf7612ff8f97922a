"""Audit: who ran what, where and when, delivered to the configured sinks.

Imported only when a configuration file declares a sink (``[audit.sinks.NAME]``): a run
without sinks imports nothing of this package. The pieces:

- :mod:`~nexus_core.audit.config`: where sinks are declared (the system file a user cannot
  override, the user file, the project file) and each sink's salt;
- :mod:`~nexus_core.audit.records`: events turned into records of one JSON shape, and the
  generic convention (an event class with ``audit = "code"`` is audited field by field);
- :mod:`~nexus_core.audit.delivery`: one bounded queue and thread per sink, the failure
  policy (``required``) and the flush at the end of a run;
- :mod:`~nexus_core.audit.chain`: the file sink's SHA-256 hash chain, its Ed25519-signed
  checkpoints and ``nexus audit verify``;
- the built-in sinks: :mod:`~nexus_core.audit.file`, :mod:`~nexus_core.audit.syslog`,
  :mod:`~nexus_core.audit.splunk`, :mod:`~nexus_core.audit.loganalytics`.
"""
