"""Per-device message budgets at the local broker's input boundary, for every MQTT device kind.

A device of a kind sends little: a button its press and release and a battery report now and
then, a door terminal its grants, openings and heartbeats. One that sends far more (a broken
firmware looping, a stolen login) must not cost the gateway its CPU, its dedup memory or its
store. Buttons (``drivers.mqtt.buttons``), door terminals (``drivers.doors.terminals``) and any
other kind on the local broker use one ``Limiter`` per config entry, from its
``RateLimitConfig`` (``gateway.config.mqtt_devices``).

Contract:
- ``admit(device)``: a token bucket per device id, ``burst`` tokens, refilled at ``rate`` a
  second on the monotonic clock it is given. True (one token spent) while the device is within
  its budget. Called once per message of a known device, before the payload is decoded.
- The rule a kind applies with it: a message within the budget goes on as before. One beyond
  it is still mapped, and goes on only if ``changed(key, state)``: its state differs from the
  last one that went on for ``key`` (a button's device and input: pressed or not; a door: what
  it did last). Anything else beyond the budget (repeats, junk, heartbeats) is dropped and
  counted as ``rate_limited``. So a real press and its release always get in, whatever the
  same device sent before; only repeats and junk beyond the budget are lost. Every message
  that goes on, within the budget or not, is recorded with ``passed(key, state)``.
- Memory is bounded: at most ``MAX_KEYS`` buckets and ``MAX_KEYS`` states per limiter. A
  bucket refilled to ``burst`` is the same as none, so those go first; then the oldest.
- Pure and synchronous: no I/O, no logging, no asyncio; O(1) per call but for an eviction.
"""

from collections.abc import Callable, Hashable

from gateway.config.mqtt_devices import RateLimitConfig

MAX_KEYS = 20_000  # devices (and states) a limiter remembers; an entry lists 10,000 at most


class Limiter:
    """The budgets of one config entry's devices, and the last state of each that went on."""

    def __init__(self, cfg: RateLimitConfig, now: Callable[[], float]) -> None:
        self.rate = cfg.rate
        self.burst = float(cfg.burst)
        self.now = now
        self._buckets: dict[str, list[float]] = {}  # device -> [tokens, time of the count]
        self._states: dict[Hashable, object] = {}  # key -> last state that went on

    def admit(self, device: str) -> bool:
        """Whether ``device`` is within its budget; spends a token if it is."""
        now = self.now()
        bucket = self._buckets.get(device)
        if bucket is None:
            if len(self._buckets) >= MAX_KEYS:
                self._evict(now)
            self._buckets[device] = [self.burst - 1.0, now]
            return True
        tokens = min(self.burst, bucket[0] + (now - bucket[1]) * self.rate)
        bucket[1] = now
        if tokens >= 1.0:
            bucket[0] = tokens - 1.0
            return True
        bucket[0] = tokens
        return False

    def changed(self, key: Hashable, state: object) -> bool:
        """Whether ``state`` differs from the last one that went on for ``key`` (or none did)."""
        return key not in self._states or self._states[key] != state

    def passed(self, key: Hashable, state: object) -> None:
        """Record ``state`` as the last one that went on for ``key``."""
        states = self._states
        if key not in states and len(states) >= MAX_KEYS:
            del states[next(iter(states))]  # the oldest key: forgetting it only lets one more in
        states[key] = state

    def _evict(self, now: float) -> None:
        full = [
            d
            for d, (tokens, at) in self._buckets.items()
            if tokens + (now - at) * self.rate >= self.burst
        ]
        for device in full:
            del self._buckets[device]
        if len(self._buckets) >= MAX_KEYS:  # every device is spending: forget the oldest tenth
            for device in list(self._buckets)[: MAX_KEYS // 10]:
                del self._buckets[device]
