"""The door tracker as a pipeline stage: what door traffic means, after dedup.

Contract: each door event a terminal reported (not ``derived``) is fed to the terminals'
``DoorTracker`` (``gateway.core.access``): a repeated ``forced`` / ``held_open`` of one
opening is dropped (``dropped["repeat"]``), an opening without a grant passes together with
the ``forced`` it implies. Derived events (the driver's timers: ``held_open``, terminal
offline) and every other item pass untouched. It runs after dedup, so a replayed message
never re-opens or re-grants a door. Not pure: it shares the tracker with the door driver
(which authorises its own unlocks in it) and reads the monotonic clock for grant windows.
"""

from collections import Counter
from collections.abc import Callable

from gateway.core.access import AccessEvent, DoorTracker
from gateway.core.items import Item


class DoorTracking:
    """Feeds reported door events to ``tracker`` (see the module docstring)."""

    name = "door_tracking"

    def __init__(self, tracker: DoorTracker, mono: Callable[[], float]) -> None:
        self.tracker = tracker
        self.mono = mono
        self.dropped: Counter[str] = Counter()

    def __call__(self, item: Item) -> Item | list[Item] | None:
        if not isinstance(item, AccessEvent) or item.derived:
            return item
        out: list[Item] = list(self.tracker.feed(item, self.mono()))
        if not out:
            self.dropped["repeat"] += 1
            return None
        return out if len(out) > 1 else out[0]
