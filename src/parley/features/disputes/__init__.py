"""Disputes: a marketplace escrow dispute from open to an outcome, with SLA timers and webhooks."""
