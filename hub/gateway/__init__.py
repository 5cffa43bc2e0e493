"""The hub's side of the OpenAI-compatible gateway (issue 16): the routing table it streams,
scale from zero and the idle unload."""
