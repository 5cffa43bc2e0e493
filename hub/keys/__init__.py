"""API keys of the gateway (`hubctl keys`): the hub keeps each key's sha256 only."""
