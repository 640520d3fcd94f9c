"""Who may do what: identities (users, API tokens), roles and their permissions, sessions, and
the audit trail. The web (web/auth.py) and the CLI ask here; nothing else decides access."""
