"""The simulated devices ``cgw demo`` (``gateway.cli.demo``), the tests and the benchmarks use,
and the demo's broker config."""
