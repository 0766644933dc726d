"""Configuration: connection settings, where files live, the local server's identity, the
pseudonymisation secret."""
