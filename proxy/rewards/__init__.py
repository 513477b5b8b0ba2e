"""The reward path: the allow-list and the body rules, the upstream body, and the remembered
decisions of repeats."""
