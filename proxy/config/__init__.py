"""Configuration: the schema of every key, reading the TOML file and the environment by it, and
the checks that span keys."""
