"""``cgw demo`` and the simulated devices it (and the tests and benchmarks) use."""
