"""The cluster's model registry (issue 17): entries filled once from Hugging Face or local
files, kept in the hub's state dir or an S3-compatible store, cached by nodes."""
