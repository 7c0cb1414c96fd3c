"""The immutable audit log: append (hash-chained), verify, list, export. See inventory/audit/log.py."""

# Every kind of entry (``AuditEntry.event``), for the filters of the CLI and the API; here so that the CLI's
# options declare them without loading the audit log's module (SQLAlchemy).
AUDIT_EVENTS = ("tool_call", "approval", "sync", "token", "restore", "archive", "policy")
