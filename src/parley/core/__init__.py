"""The domain: conversations, messages, sequence numbers, receipts, errors. No web or SQL here."""
