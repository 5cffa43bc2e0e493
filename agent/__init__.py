"""gpufleet agent: runs on every GPU host, dials the hub, executes its tasks."""
