"""Release control plane: feature flags, canary rollout, gates, kill switch, Go/No-Go."""
