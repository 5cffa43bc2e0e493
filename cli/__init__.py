"""hubctl: the operator's command line, a thin client over the Hub gRPC API."""
