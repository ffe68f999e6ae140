"""Export packages: a conversation's (members, staff) or a person's own data (GDPR access)."""
