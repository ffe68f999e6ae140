"""The audit log's REST API and `parley audit` commands (the log itself: services/audit.py)."""
