"""gpufleet hub: the central server that agents dial and operators call."""
