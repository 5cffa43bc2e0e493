"""gpufleet-gateway: one OpenAI-compatible endpoint for the whole cluster (issue 16)."""
