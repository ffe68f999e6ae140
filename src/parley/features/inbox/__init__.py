"""Inboxes: one per website or channel, each with its widget token, domains and hours."""
