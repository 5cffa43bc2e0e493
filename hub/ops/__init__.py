"""Cluster-wide operations (switch, drain, stop) run node by node in batches."""
