"""Notifications: e-mail, Web Push and Telegram, fed by the outbox the message writer fills."""
