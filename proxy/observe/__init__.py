"""What an operator sees: the JSON access log, Prometheus metrics, and the probe of
dependencies."""
