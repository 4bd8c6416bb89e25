"""Console accounts for tests: argon2id at its cheapest, so a check takes microseconds.

The production parameters (m=19 MiB, t=2) cost ~35 ms a check; tests that only need a
working hash use ``FAST``. What the parameters themselves must be is tested on ``HASHER``.
"""

from __future__ import annotations

from argon2 import PasswordHasher

FAST = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
SLOWER = PasswordHasher(time_cost=2, memory_cost=16, parallelism=1)  # "other parameters"
