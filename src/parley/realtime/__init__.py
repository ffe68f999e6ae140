"""Real-time delivery: envelopes, the per-node hub, and the stream sessions transports serve."""
