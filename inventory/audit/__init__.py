"""The immutable audit log: append (hash-chained), verify, list, export. See inventory/audit/log.py."""
