"""What the benchmarks share: processes, peers, measurements (run by hand, never by the tests).

Modules:
- ``procs``: loopback constants, free ports, temporary folders, worker subprocesses (``Child``:
  stdin stops it, stdout lines are its protocol), mosquitto (``Broker``), stopping by PID.
- ``measure``: RSS and CPU of this and other processes, a machine-wide CPU sampler, nearest-rank
  percentiles, and the lines every report starts with (command and machine).
- ``backlog``: the telemetry backlog in the real ``Store``, and the drain worker.
- ``peers``: the paho subscriber loop of the subscriber workers, the Modbus simulator worker,
  the benchmark gateway config, and the daemon started as systemd starts it (``READY=1``).

Every process a benchmark starts is stopped by its PID when the benchmark ends or fails.
Scripts import it as ``harness`` (``bench/`` is first on ``sys.path`` when they run).
"""
