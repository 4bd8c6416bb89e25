"""The pipeline: one ordered list of stages that every driver's output passes through.

Contract (structlog's processor chain is the model):
- A ``Stage`` is a plain callable ``(Item) -> Item | None``: it returns the item (the same
  or a new one) to pass it on, or None to drop it; a stage that drops says why by counting
  it in its own ``dropped`` counter (``Counter[str]``, reason -> count), if it has one. A
  stage that derives more items from one (the door tracker: an opening without a grant is
  also ``forced``) returns a list, in order; each goes on through the later stages.
- ``Pipeline(stages)`` is itself the ``emit`` every driver group is given: calling it runs
  the item through the stages in order, synchronously, and stops at the first None. What a
  stage raises propagates to the driver (a bug: the component fails and the supervisor sees).
- ``Item`` is what drivers emit: ``RawSample`` (decoded, not yet scaled), ``Sample``,
  ``DeviceStatus``, ``ContactEvent``, ``AccessEvent``.
- The order the composition root builds: validate -> scale -> device state -> rules -> store
  (``gateway.pipeline.stages``). Pure stages take time from the item, never from a clock.
"""

from collections import Counter
from collections.abc import Sequence

from gateway.core.items import Item, Stage


class Pipeline:
    """Runs each item through ``stages`` in order; counts what each stage dropped."""

    def __init__(self, stages: Sequence[Stage]) -> None:
        self.stages = tuple(stages)
        self.passed = 0
        self.dropped: Counter[str] = Counter()  # stage name -> items it dropped

    def __call__(self, item: Item) -> None:
        """Run ``item`` through every stage, stopping where one drops it."""
        self._run(item, 0)

    def _run(self, item: Item, start: int) -> None:
        for at in range(start, len(self.stages)):
            stage = self.stages[at]
            passed = stage(item)
            if passed is None:
                self.dropped[_name(stage)] += 1
                return
            if isinstance(passed, list):
                for each in passed:
                    self._run(each, at + 1)
                return
            item = passed
        self.passed += 1


def _name(stage: Stage) -> str:
    name = getattr(stage, "name", None) or getattr(stage, "__name__", None)
    return name if isinstance(name, str) else type(stage).__name__
