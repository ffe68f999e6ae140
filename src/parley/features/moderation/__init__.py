"""Moderation: the filter pipeline on every send, reports, the queue, warnings, mutes and bans."""
