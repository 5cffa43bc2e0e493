"""Trust: the hub\x27s CA, enrollment, roles, audit."""
