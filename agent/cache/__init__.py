"""The node's model cache (issue 17): registry entries fetched, verified and laid out for the
engines."""
