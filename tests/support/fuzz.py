"""How many examples a fuzz test draws.

In the suite (the ``ci`` hypothesis profile) a fuzz test draws the same ``n`` examples on every
run, a few hundred, so the suite stays within its time; ``HYPOTHESIS_PROFILE=explore`` draws ten
times as many fresh ones. Run that after changing a parser, and pin what it finds with
``@example``.
"""

import os

__all__ = ["examples"]

EXPLORE = os.environ.get("HYPOTHESIS_PROFILE") == "explore"


def examples(n: int) -> int:
    """``n`` in the suite, ``10 * n`` when exploring."""
    return 10 * n if EXPLORE else n
