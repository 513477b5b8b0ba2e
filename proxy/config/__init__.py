"""Configuration: the schema of every key, reading the TOML file and the environment by it, the
secrets and their masking, what a storage URL may be, and the checks that span keys."""
