"""Live chat: routing visitor conversations to branches, the operator console's backend, notes."""
