"""The tamper-evident audit log: a SHA-256 hash chain over access events and admin actions."""
